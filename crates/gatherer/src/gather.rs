//! One gather, end to end: list pods into shapes, then (only then) find the extractors
//! and ask each node about its IDs while image details are fetched, merge, and report.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::extractors::{self, ClientConfig, ExtractorCollector, ExtractorFilter, ExtractorPod};
use crate::images::{self, ImageApiState, ImageCache, ImageOptions, ImagesOutcome};
use crate::kube_types::Pod;
use crate::merge::{self, RuntimeInfos};
use crate::output::WorkloadPods;
use crate::pods::{self, ListOptions, Listing, PodsError};
use crate::shape::limit_reached_message;
use crate::status::{Durations, FailedNode, GatherStatus, RuntimeInfoStatus};

/// Where pods come from.
#[derive(Clone)]
pub enum PodSource {
    /// The API server of the given client.
    Api(kube::Client),
    /// A `PodList` JSON file; nothing is asked from any API server.
    File(PathBuf),
}

/// How to reach the extractors.
#[derive(Debug, Clone)]
pub struct RuntimeInfoSettings {
    pub filter: ExtractorFilter,
    pub port: u16,
    pub ca_file: PathBuf,
    pub server_name: String,
    pub token_file: PathBuf,
    pub concurrency: usize,
    pub node_timeout: Duration,
}

#[derive(Clone)]
pub struct GatherSettings {
    pub source: PodSource,
    /// `None` with `--no-runtime-info`.
    pub runtime_info: Option<RuntimeInfoSettings>,
    pub list: ListOptions,
}

/// The report: the document and its status.
#[derive(Debug, Clone)]
pub struct Report {
    pub workload: WorkloadPods,
    pub status: GatherStatus,
}

struct RuntimeResult {
    infos: RuntimeInfos,
    status: RuntimeInfoStatus,
    errors: Vec<String>,
    notes: Vec<String>,
    elapsed: Duration,
}

fn skipped(reason: String) -> RuntimeInfoStatus {
    RuntimeInfoStatus {
        gathered: false,
        skipped_reason: Some(reason),
        ..Default::default()
    }
}

async fn gather_runtime_info(
    settings: &RuntimeInfoSettings,
    source: &PodSource,
    listing: &Listing,
    file_extractors: Vec<ExtractorPod>,
) -> RuntimeResult {
    let start = Instant::now();
    let offline = matches!(source, PodSource::File(_));
    let mut r = RuntimeResult {
        infos: RuntimeInfos::new(),
        status: RuntimeInfoStatus::default(),
        errors: Vec::new(),
        notes: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let ids = &listing.gathered.container_ids;
    // Discovery happens only now, after the last page.
    let found = match source {
        PodSource::Api(client) => match extractors::discover(client, &settings.filter).await {
            Ok(found) => found,
            Err(e) => {
                r.errors.push(format!("runtime info skipped: {e}"));
                r.status = skipped(e.to_string());
                r.elapsed = start.elapsed();
                return r;
            }
        },
        PodSource::File(_) => file_extractors,
    };
    r.status.extractors_found = found.len();
    r.status.nodes_with_containers = ids.0.values().filter(|v| !v.is_empty()).count();
    if found.is_empty() {
        let msg = settings.filter.none_running_message();
        if offline {
            r.notes
                .push(format!("runtime info skipped: {msg} in the pods file"));
        } else {
            r.errors.push(msg.clone());
        }
        r.status.skipped_reason = Some(msg);
        r.elapsed = start.elapsed();
        return r;
    }
    let (ids, invalid) = ids.split_valid();
    if !invalid.is_empty() {
        let shown: Vec<&str> = invalid.iter().take(5).map(String::as_str).collect();
        r.notes.push(format!(
            "{} container IDs are not <runtime>://<64 hex> and were not requested: {}{}",
            invalid.len(),
            shown.join(", "),
            if invalid.len() > shown.len() {
                ", ..."
            } else {
                ""
            }
        ));
    }
    let (requests, without) = extractors::plan(&ids, &found);
    r.status.nodes_without_extractor = without;
    if requests.is_empty() {
        r.status.gathered = true;
        r.elapsed = start.elapsed();
        return r;
    }
    let cfg = match ClientConfig::load(
        settings.port,
        &settings.server_name,
        &settings.ca_file,
        &settings.token_file,
        settings.concurrency,
        settings.node_timeout,
    ) {
        Ok(cfg) => cfg,
        Err(e) => {
            let reason = e.to_string();
            let msg = format!("runtime info skipped: {reason}");
            if offline {
                // Typical offline run (a laptop): the in-cluster CA and token do not exist.
                r.notes.push(msg);
            } else {
                r.errors.push(msg);
            }
            r.status = RuntimeInfoStatus {
                extractors_found: r.status.extractors_found,
                nodes_with_containers: r.status.nodes_with_containers,
                nodes_without_extractor: std::mem::take(&mut r.status.nodes_without_extractor),
                ..skipped(reason)
            };
            r.elapsed = start.elapsed();
            return r;
        }
    };
    r.status.gathered = true;
    r.status.nodes_asked = requests.len();
    r.status.containers_requested = requests.iter().map(|q| q.container_ids.len()).sum();
    tracing::info!(
        "runtime info: asking {} nodes about {} containers ({} at a time)",
        r.status.nodes_asked,
        r.status.containers_requested,
        cfg.concurrency
    );
    for outcome in extractors::fetch_all(&cfg, requests).await {
        match outcome.result {
            Ok(infos) => {
                r.status.nodes_answered += 1;
                r.status.containers_answered += infos.len();
                merge::merge_workloads(&mut r.infos, infos);
            }
            Err(failure) => {
                r.status.nodes_failed.push(FailedNode {
                    node: outcome.node,
                    pod_ip: outcome.pod_ip,
                    containers_requested: outcome.containers_requested,
                    failure,
                });
            }
        }
    }
    // Node order, not completion order: the same failures give the same report.
    r.status.nodes_failed.sort_by(|a, b| a.node.cmp(&b.node));
    r.errors.extend(
        r.status
            .nodes_failed
            .iter()
            .map(|f| format!("node {}: {}", f.node, f.failure.reason)),
    );
    r.elapsed = start.elapsed();
    r
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Runs one gather. Only a failed pod listing is an error: everything after it
/// (extractors, images) degrades into the status file.
pub async fn gather(settings: &GatherSettings) -> Result<Report, PodsError> {
    let start = Instant::now();
    let mut file_extractors = Vec::new();
    let listing = match &settings.source {
        PodSource::Api(client) => pods::list_from_api(client, &settings.list).await?,
        PodSource::File(path) => match &settings.runtime_info {
            Some(rt) => {
                let mut collector = ExtractorCollector {
                    filter: &rt.filter,
                    found: Vec::new(),
                };
                let listing = pods::list_from_file(path, &settings.list, &mut collector)?;
                file_extractors = collector.found;
                listing
            }
            None => pods::list_from_file(path, &settings.list, &mut |_p: Pod| {})?,
        },
    };
    let mut errors = Vec::new();
    let mut notes = Vec::new();
    if listing.gathered.limit_reached {
        errors.push(limit_reached_message(settings.list.limit));
    }

    let image_client = match &settings.source {
        PodSource::Api(client) => Some(client),
        PodSource::File(_) => None,
    };
    let mut cache = ImageCache::new(0);
    let image_opts = ImageOptions::for_pods(listing.gathered.info.pod_count);
    let images_fut = images::gather_images(
        image_client,
        &listing.gathered.image_ids,
        &mut cache,
        &image_opts,
    );
    let runtime_fut = async {
        match &settings.runtime_info {
            Some(rt) => {
                Some(gather_runtime_info(rt, &settings.source, &listing, file_extractors).await)
            }
            None => None,
        }
    };
    let (images, runtime): (ImagesOutcome, Option<RuntimeResult>) =
        tokio::join!(images_fut, runtime_fut);

    let limit_reached = listing.gathered.limit_reached;
    let pods_read = listing.gathered.pods_seen;
    let mut workload = listing.gathered.info;
    workload.image_count = images.count;
    workload.images = images.images;
    errors.extend(images.errors);
    if images.api == ImageApiState::NotQueried {
        notes.push(
            "image details not queried (offline --pods-file mode); images are counted only"
                .to_owned(),
        );
    }

    let (runtime_status, runtime_elapsed) = match runtime {
        Some(mut r) => {
            r.status.containers_merged =
                merge::merge_runtime_info_into_shapes(&mut workload, &r.infos);
            errors.extend(r.errors);
            notes.extend(r.notes);
            (r.status, r.elapsed)
        }
        None => (
            skipped("disabled with --no-runtime-info".to_owned()),
            Duration::ZERO,
        ),
    };

    let status = GatherStatus {
        source: match &settings.source {
            PodSource::Api(_) => "api".to_owned(),
            PodSource::File(p) => format!("file:{}", p.display()),
        },
        pods: workload.pod_count,
        pods_read,
        namespaces: workload.namespaces.as_ref().map_or(0, |n| n.len()),
        shapes: workload.shape_count(),
        limit: settings.list.limit,
        limit_reached,
        pages: listing.pages,
        list_restarts: listing.restarts,
        image_count: workload.image_count,
        images_found: images.found,
        image_api: images.api,
        runtime_info: runtime_status,
        durations_ms: Durations {
            listing: millis(listing.elapsed),
            images: millis(images.elapsed),
            runtime_info: millis(runtime_elapsed),
            total: millis(start.elapsed()),
        },
        errors,
        notes,
    };
    Ok(Report { workload, status })
}
