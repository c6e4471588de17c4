//! Prometheus metrics of `serve` (exposed on the health port at `/metrics`).
//!
//! Label values are bounded sets (method names are folded to a fixed list, codes are numbers),
//! except the runtime info gauge whose labels are kind and version as found on this node; its
//! series are rebuilt from the cache at every scrape and capped.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::cache::ResultCache;

/// At most this many (kind, version) series in the info gauge.
const MAX_KIND_SERIES: usize = 200;
/// Label values longer than this are cut (versions come from container files).
const MAX_LABEL_LEN: usize = 64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
    pub version: String,
}

fn request_histogram() -> Histogram {
    // 1 ms … ~130 s
    Histogram::new(exponential_buckets(0.001, 2.0, 18))
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<MethodLabels, Histogram, fn() -> Histogram>,
    pub scan_duration: Histogram,
    pub containers_scanned: Family<ResultLabels, Counter>,
    pub scanner_requests: Family<ResultLabels, Counter>,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub shared_scans: Counter,
    pub timeouts: Counter,
    pub auth_failures: Family<ReasonLabels, Counter>,
    pub tls_reloads: Counter,
    pub runtime_kinds: Family<KindLabels, Gauge>,
    pub cached_containers: Gauge,
    pub stuck_helpers: Gauge,
    cache: std::sync::OnceLock<Arc<ResultCache>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("runtime_extractor");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "API requests answered, by HTTP method and status code",
            requests.clone(),
        );
        let request_duration: Family<MethodLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(request_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an API request, by HTTP method",
            request_duration.clone(),
        );
        let scan_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "container_scan_duration_seconds",
            "Time the scanner took to analyse one container",
            scan_duration.clone(),
        );
        let containers_scanned = Family::<ResultLabels, Counter>::default();
        registry.register(
            "containers_scanned",
            "Containers analysed by the scanner (result=ok|failed|gone)",
            containers_scanned.clone(),
        );
        let scanner_requests = Family::<ResultLabels, Counter>::default();
        registry.register(
            "scanner_requests",
            "Requests sent to the scanner socket (result=ok|error|cancelled)",
            scanner_requests.clone(),
        );
        let cache_hits = Counter::default();
        registry.register(
            "cache_hits",
            "Containers answered from the result cache",
            cache_hits.clone(),
        );
        let cache_misses = Counter::default();
        registry.register(
            "cache_misses",
            "Containers that needed a scan",
            cache_misses.clone(),
        );
        let shared_scans = Counter::default();
        registry.register(
            "shared_scans",
            "Containers whose in-flight scan was shared with another request",
            shared_scans.clone(),
        );
        let timeouts = Counter::default();
        registry.register(
            "request_timeouts",
            "Requests that overran the server-side deadline (answered 504)",
            timeouts.clone(),
        );
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "auth_failures",
            "Rejected requests (reason=unauthenticated|forbidden|unavailable)",
            auth_failures.clone(),
        );
        let tls_reloads = Counter::default();
        registry.register(
            "tls_certificate_reloads",
            "Times a rotated TLS certificate was loaded",
            tls_reloads.clone(),
        );
        let runtime_kinds = Family::<KindLabels, Gauge>::default();
        registry.register(
            "runtime_kind_info",
            "Containers on this node per detected runtime kind and version (from the cache)",
            runtime_kinds.clone(),
        );
        let cached_containers = Gauge::default();
        registry.register(
            "cached_containers",
            "Containers in the result cache",
            cached_containers.clone(),
        );
        let stuck_helpers = Gauge::default();
        registry.register(
            "scanner_stuck_helpers",
            "Sandbox helpers the scanner killed at their deadline that have not died yet (blocked in the kernel on a container's memory), as of its last answer",
            stuck_helpers.clone(),
        );
        Metrics {
            registry,
            requests,
            request_duration,
            scan_duration,
            containers_scanned,
            scanner_requests,
            cache_hits,
            cache_misses,
            shared_scans,
            timeouts,
            auth_failures,
            tls_reloads,
            runtime_kinds,
            cached_containers,
            stuck_helpers,
            cache: std::sync::OnceLock::new(),
        }
    }

    /// Where the info gauge reads its values at scrape time.
    pub fn attach_cache(&self, cache: Arc<ResultCache>) {
        let _ = self.cache.set(cache);
    }

    pub fn record_request(&self, method: &http::Method, code: u16, seconds: f64) {
        let method = method_label(method);
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                code: code.to_string(),
            })
            .inc();
        self.request_duration
            .get_or_create(&MethodLabels {
                method: method.to_owned(),
            })
            .observe(seconds);
    }

    pub fn auth_failure(&self, reason: &str) {
        self.auth_failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn scanned(&self, result: &str) {
        self.containers_scanned
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    pub fn scanner_request(&self, result: &str) {
        self.scanner_requests
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        if let Some(cache) = self.cache.get() {
            self.runtime_kinds.clear();
            for ((kind, version), n) in cache.kinds().into_iter().take(MAX_KIND_SERIES) {
                self.runtime_kinds
                    .get_or_create(&KindLabels {
                        kind: cut(&kind),
                        version: cut(&version),
                    })
                    .set(n);
            }
            self.cached_containers
                .set(i64::try_from(cache.len()).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Methods outside the usual set share one label value (no unbounded series).
pub fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::PATCH => "PATCH",
        _ => "other",
    }
}

fn cut(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_LABEL_LEN)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime_info::ContainerRuntimeInfo;
    use std::time::Duration;

    #[test]
    fn exposition_has_every_family() {
        let m = Metrics::new();
        let cache = Arc::new(ResultCache::new(10, Duration::ZERO));
        cache.insert(
            "a",
            1,
            1,
            crate::cache::Placement {
                namespace: "ns".into(),
                pod: "p".into(),
                container_id: "containerd://a".into(),
            },
            Arc::new(ContainerRuntimeInfo {
                kind: "Java".into(),
                kind_version: "17.0.7".into(),
                ..Default::default()
            }),
        );
        m.attach_cache(cache);
        m.record_request(&http::Method::POST, 200, 0.01);
        m.record_request(&http::Method::from_bytes(b"BREW").unwrap(), 405, 0.001);
        m.auth_failure("unauthenticated");
        m.scanned("ok");
        m.scan_duration.observe(0.2);
        let text = m.encode().unwrap();
        for needle in [
            r#"runtime_extractor_http_requests_total{method="POST",code="200"} 1"#,
            r#"runtime_extractor_http_requests_total{method="other",code="405"} 1"#,
            "runtime_extractor_http_request_duration_seconds_bucket",
            "runtime_extractor_container_scan_duration_seconds_count 1",
            r#"runtime_extractor_containers_scanned_total{result="ok"} 1"#,
            "runtime_extractor_cache_hits_total 0",
            "runtime_extractor_request_timeouts_total 0",
            r#"runtime_extractor_auth_failures_total{reason="unauthenticated"} 1"#,
            r#"runtime_extractor_runtime_kind_info{kind="Java",version="17.0.7"} 1"#,
            "runtime_extractor_cached_containers 1",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
