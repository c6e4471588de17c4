//! `/gather_runtime_info`: routes, request validation, the deadline, and JSON errors.
//!
//! Wire-compatible with the reference exporter for what the operator uses (POST with
//! `{"containerIds": [...]}`, GET = all, the `hash` rule, the two 400 bodies), and stricter
//! where the reference was wrong (405 instead of 404, JSON content type on errors, limits,
//! 401/403/503/504).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use runtime_info::{ContainerId, GatherRuntimeInfoRequest, NodeRuntimeInfo};

use super::auth::{Authenticator, Decision, API_PATH};
use super::metrics::Metrics;
use super::scan_pool::{response_keys, Progress, ScanError, ScanPool};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most container IDs in one request.
pub const MAX_IDS: usize = 10_000;

#[derive(Clone)]
pub struct ApiState {
    pub pool: Arc<ScanPool>,
    pub auth: Arc<Authenticator>,
    pub metrics: Arc<Metrics>,
    pub request_timeout: Duration,
}

/// The caller's identity, set by the auth layer (for logs).
#[derive(Debug, Clone)]
struct Caller(String);

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route(API_PATH, any(gather))
        .fallback(not_found)
        // Layers run outermost-last: observe → authenticate → route.
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// An error answer: `{"error": "..."}` with `Content-Type: application/json`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    fn with_header(mut self, name: header::HeaderName, value: &'static str) -> Self {
        self.headers.push((name, HeaderValue::from_static(value)));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message }).to_string();
        let mut resp = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        for (k, v) in self.headers {
            resp.headers_mut().insert(k, v);
        }
        resp
    }
}

async fn observe(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    let elapsed = started.elapsed();
    let code = resp.status().as_u16();
    s.metrics
        .record_request(&method, code, elapsed.as_secs_f64());
    let user = resp
        .extensions()
        .get::<Caller>()
        .map(|c| c.0.as_str())
        .unwrap_or("-");
    // Path is cut: it is attacker-chosen.
    let path: String = path.chars().take(64).collect();
    tracing::info!(%method, path, code, user, ms = elapsed.as_millis() as u64, "request");
    resp
}

async fn authenticate(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    let decision = s
        .auth
        .check(req.headers(), req.method(), req.uri().path())
        .await;
    match decision {
        Decision::Allowed { user } => {
            let mut resp = next.run(req).await;
            resp.extensions_mut().insert(Caller(user));
            resp
        }
        Decision::Unauthenticated { reason } => {
            s.metrics.auth_failure("unauthenticated");
            ApiError::new(StatusCode::UNAUTHORIZED, format!("Unauthorized: {reason}"))
                .with_header(header::WWW_AUTHENTICATE, "Bearer")
                .into_response()
        }
        Decision::Forbidden { user } => {
            s.metrics.auth_failure("forbidden");
            let verb = req.method().as_str().to_ascii_lowercase();
            let mut resp = ApiError::new(
                StatusCode::FORBIDDEN,
                format!("Forbidden: user {user:?} may not {verb} {API_PATH}"),
            )
            .into_response();
            resp.extensions_mut().insert(Caller(user));
            resp
        }
        Decision::Unavailable { reason } => {
            s.metrics.auth_failure("unavailable");
            tracing::warn!(%reason, "authentication unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "authentication is unavailable (the Kubernetes API could not be reached); retry later",
            )
            .into_response()
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not found")
}

/// The reference's rule: hashed unless `hash` is present with a value other than `true`
/// (Go: `hash := param == "" || param == "true"`, first value of the parameter).
pub fn hash_requested(uri: &Uri) -> bool {
    let Some(query) = uri.query() else {
        return true;
    };
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(k).as_deref() == Some("hash") {
            // An undecodable value is treated as given-but-not-"true" only if it is
            // non-empty, as Go would have rejected the pair and kept looking.
            return match percent_decode(v) {
                Some(v) => v.is_empty() || v == "true",
                None => continue,
            };
        }
    }
    true
}

/// `application/x-www-form-urlencoded` decoding of one query component (`+` = space).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// POST bodies must be JSON. A missing Content-Type is accepted as JSON: the reference never
/// looked at it, and the body must parse as JSON either way.
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/json") => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        )),
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body larger than {MAX_BODY_BYTES} bytes"),
    )
}

async fn read_body(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, ApiError> {
    use futures::StreamExt;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    // Chunked bodies carry no length: count as they arrive and stop at the limit.
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| {
            ApiError::new(StatusCode::BAD_REQUEST, "failed to read the request body")
        })?;
        if buf.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// The container IDs of a POST body (`[]` = all).
fn parse_ids(body: &[u8]) -> Result<Vec<ContainerId>, ApiError> {
    let invalid = || ApiError::new(StatusCode::BAD_REQUEST, "Invalid JSON in request body");
    // Go decodes the first JSON value only and into a struct: an array or a scalar at the
    // top level is an error there (serde would accept an array as a struct).
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if !matches!(first, Some(b'{') | Some(b'n')) {
        return Err(invalid());
    }
    let mut stream =
        serde_json::Deserializer::from_slice(body).into_iter::<Option<GatherRuntimeInfoRequest>>();
    let req = match stream.next() {
        Some(Ok(req)) => req,
        _ => return Err(invalid()),
    };
    let Some(raw) = req.and_then(|r| r.container_ids) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "containerIds field is required",
        ));
    };
    if raw.len() > MAX_IDS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("more than {MAX_IDS} container IDs in one request"),
        ));
    }
    raw.iter()
        .map(|s| {
            s.parse::<ContainerId>()
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))
        })
        .collect()
}

async fn gather(
    State(s): State<ApiState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let deprecated_get = match method {
        Method::GET => true,
        Method::POST => false,
        _ => {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("method {method} is not allowed; use POST"),
            )
            .with_header(header::ALLOW, "GET, POST"))
        }
    };
    let hash = hash_requested(&uri);
    let progress = Progress::default();
    let deadline = s.request_timeout;
    let work = async {
        let ids = if deprecated_get {
            Vec::new()
        } else {
            check_content_type(&headers)?;
            let body = read_body(&headers, body).await?;
            parse_ids(&body)?
        };
        let found = s.pool.gather(&ids, &progress).await.map_err(|e| {
            tracing::warn!(error = %e, "scan failed");
            match e {
                ScanError::Unreachable { .. } | ScanError::Scanner(_) => {
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                }
            }
        })?;
        Ok::<_, ApiError>((ids, found))
    };
    let (ids, found) = match tokio::time::timeout(deadline, work).await {
        Ok(r) => r?,
        Err(_) => {
            s.metrics.timeouts.inc();
            let done = progress.done.load(Ordering::Relaxed);
            let wanted = progress.wanted.load(Ordering::Relaxed);
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "request exceeded the server deadline of {}s: {done} of {wanted} containers were analysed (finished results are cached; retry to get them)",
                    deadline.as_secs_f64()
                ),
            ));
        }
    };

    let keys = response_keys(&ids);
    let mut node = NodeRuntimeInfo::new();
    for f in found {
        let key = keys.get(&f.hex).cloned().unwrap_or(f.container_id);
        let info = if hash {
            f.info.anonymized()
        } else {
            (*f.info).clone()
        };
        node.entry(f.namespace)
            .or_default()
            .entry(f.pod)
            .or_default()
            .insert(key, info);
    }
    let body = serde_json::to_vec(&node).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding the answer: {e}"),
        )
    })?;
    let mut resp = (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if deprecated_get {
        let h = resp.headers_mut();
        h.insert("deprecation", HeaderValue::from_static("true"));
        h.insert(
            header::WARNING,
            HeaderValue::from_static(
                "299 - \"GET /gather_runtime_info is deprecated: use POST with {\\\"containerIds\\\": [...]}\"",
            ),
        );
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn hash_rule_is_the_references() {
        for (q, want) in [
            ("/gather_runtime_info", true),
            ("/gather_runtime_info?hash=true", true),
            ("/gather_runtime_info?hash=", true),
            ("/gather_runtime_info?hash", true),
            ("/gather_runtime_info?other=1", true),
            ("/gather_runtime_info?hash=false", false),
            ("/gather_runtime_info?hash=TRUE", false),
            ("/gather_runtime_info?hash=1", false),
            ("/gather_runtime_info?hash=%74rue", true),
            ("/gather_runtime_info?hash=false&hash=true", false),
            ("/gather_runtime_info?x=1&hash=no", false),
        ] {
            assert_eq!(hash_requested(&uri(q)), want, "{q}");
        }
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert!(check_content_type(&h).is_ok(), "absent is accepted");
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
        ] {
            h.insert(header::CONTENT_TYPE, ok.parse().unwrap());
            assert!(check_content_type(&h).is_ok(), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/jsonx",
        ] {
            h.insert(header::CONTENT_TYPE, bad.parse().unwrap());
            let e = check_content_type(&h).unwrap_err();
            assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{bad}");
        }
    }

    #[test]
    fn bodies() {
        let hex = "a".repeat(64);
        let ok = format!(r#"{{"containerIds": ["cri-o://{hex}", "{hex}"], "extra": 1}} trailing"#);
        assert_eq!(parse_ids(ok.as_bytes()).unwrap().len(), 2);
        assert!(parse_ids(br#"{"containerIds": []}"#).unwrap().is_empty());
        for (body, status, msg) in [
            (&b"not json"[..], 400, "Invalid JSON in request body"),
            (b"", 400, "Invalid JSON in request body"),
            (b"[[\"x\"]]", 400, "Invalid JSON in request body"),
            (
                br#"{"containerIds": "x"}"#,
                400,
                "Invalid JSON in request body",
            ),
            (
                br#"{"containerIds": [1]}"#,
                400,
                "Invalid JSON in request body",
            ),
            (b"{}", 400, "containerIds field is required"),
            (
                br#"{"containerIds": null}"#,
                400,
                "containerIds field is required",
            ),
            (b"null", 400, "containerIds field is required"),
            (
                br#"{"containerIds": ["cri-o://short"]}"#,
                400,
                "invalid container ID \"cri-o://short\"",
            ),
        ] {
            let e = parse_ids(body).unwrap_err();
            assert_eq!(
                e.status.as_u16(),
                status,
                "{}",
                String::from_utf8_lossy(body)
            );
            assert!(
                e.message.contains(msg),
                "{} → {}",
                String::from_utf8_lossy(body),
                e.message
            );
        }
        let many: Vec<String> = (0..=MAX_IDS).map(|_| hex.clone()).collect();
        let body = serde_json::to_vec(&serde_json::json!({ "containerIds": many })).unwrap();
        assert_eq!(
            parse_ids(&body).unwrap_err().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
