//! Listing pods page by page (`limit` + `continue`) into the shape builder, from the API
//! or from a `PodList` file. Pages are parsed as they arrive and dropped; an expired
//! continue token (410 Gone) restarts the listing from scratch, a bounded number of times.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube::api::ListParams;

use crate::kube_types::{parse_pod_list, read_pod_list, Pod, PodSink};
use crate::shape::{Gathered, ShapeBuilder, PODS_LIMIT};

/// The reference's `workloadGatherPageSize`.
pub const PAGE_SIZE: u32 = 500;
/// A pods file larger than this is refused (a real 8000-pod cluster is far below it).
pub const MAX_PODS_FILE_BYTES: u64 = 4 << 30;

#[derive(Debug, thiserror::Error)]
pub enum PodsError {
    #[error("cannot list pods (page {page}): {cause}")]
    Api { page: u32, cause: kube::Error },
    #[error("cannot build the pod list request: {0}")]
    Request(kube::core::request::Error),
    #[error("page {page} of the pod list is not a valid PodList: {cause}")]
    Parse { page: u32, cause: serde_json::Error },
    #[error("the pod listing was restarted {0} times because its continue token kept expiring (410 Gone); giving up")]
    TooManyRestarts(u32),
    #[error("cannot read pods file {path}: {cause}")]
    FileIo {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("pods file {path} is not a valid PodList (as `kubectl get pods -A -o json` writes): {cause}")]
    FileParse {
        path: PathBuf,
        cause: serde_json::Error,
    },
    #[error("pods file {path} is larger than {max} bytes")]
    FileTooLarge { path: PathBuf, max: u64 },
}

/// Paging parameters.
#[derive(Debug, Clone)]
pub struct ListOptions {
    pub page_size: u32,
    pub limit: usize,
    /// How many times an expired continue token may restart the listing.
    pub max_restarts: u32,
}

impl Default for ListOptions {
    fn default() -> Self {
        ListOptions {
            page_size: PAGE_SIZE,
            limit: PODS_LIMIT,
            max_restarts: 3,
        }
    }
}

/// The result of a listing.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub gathered: Gathered,
    /// Pages received (all attempts).
    pub pages: u32,
    /// Restarts caused by expired continue tokens.
    pub restarts: u32,
    pub elapsed: Duration,
}

/// Lists every pod of the cluster through the API, building shapes as pages arrive.
/// Stops requesting pages once the pod limit is reached.
pub async fn list_from_api(
    client: &kube::Client,
    opts: &ListOptions,
) -> Result<Listing, PodsError> {
    let start = Instant::now();
    let mut builder = ShapeBuilder::new(opts.limit);
    let mut token: Option<String> = None;
    let mut pages = 0u32;
    let mut restarts = 0u32;
    loop {
        let mut lp = ListParams::default().limit(opts.page_size);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let request = kube::core::Request::new("/api/v1/pods")
            .list(&lp)
            .map_err(PodsError::Request)?;
        let text = match client.request_text(request).await {
            Ok(text) => text,
            Err(kube::Error::Api(status)) if status.code == 410 && token.is_some() => {
                restarts += 1;
                if restarts > opts.max_restarts {
                    return Err(PodsError::TooManyRestarts(opts.max_restarts));
                }
                tracing::warn!(
                    restarts,
                    "the pod list continue token expired (410 Gone); restarting the listing from the first page"
                );
                builder = ShapeBuilder::new(opts.limit);
                token = None;
                continue;
            }
            Err(source) => {
                return Err(PodsError::Api {
                    page: pages + 1,
                    cause: source,
                })
            }
        };
        pages += 1;
        let meta = parse_pod_list(&text, &mut builder).map_err(|source| PodsError::Parse {
            page: pages,
            cause: source,
        })?;
        drop(text);
        tracing::info!(
            "pods: page {pages} ({} pods), {} counted so far",
            meta.items,
            builder.pods_counted()
        );
        if builder.limit_reached() {
            tracing::warn!(
                "pods: the {} pod limit was reached; not reading further pages",
                opts.limit
            );
            break;
        }
        match meta.continue_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    Ok(Listing {
        gathered: builder.finish(),
        pages,
        restarts,
        elapsed: start.elapsed(),
    })
}

/// Feeds every pod to the shape builder and to an extra sink (used to find the
/// extractor pods in the same file).
struct Tee<'a, E: PodSink> {
    builder: &'a mut ShapeBuilder,
    extra: &'a mut E,
}

impl<E: PodSink> PodSink for Tee<'_, E> {
    fn pod(&mut self, pod: Pod) {
        self.builder.add_pod(&pod);
        self.extra.pod(pod);
    }
}

/// Reads a `PodList` JSON file (as `kubectl get pods -A -o json` writes it), streaming
/// its items into the shape builder and into `extra`.
pub fn list_from_file<E: PodSink>(
    path: &Path,
    opts: &ListOptions,
    extra: &mut E,
) -> Result<Listing, PodsError> {
    let start = Instant::now();
    let io_err = |source| PodsError::FileIo {
        path: path.to_owned(),
        cause: source,
    };
    let file = File::open(path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    if len > MAX_PODS_FILE_BYTES {
        return Err(PodsError::FileTooLarge {
            path: path.to_owned(),
            max: MAX_PODS_FILE_BYTES,
        });
    }
    // `take` also bounds files that grow (or never end) while being read.
    let reader = BufReader::with_capacity(1 << 16, file.take(MAX_PODS_FILE_BYTES));
    let mut builder = ShapeBuilder::new(opts.limit);
    let meta = read_pod_list(
        reader,
        &mut Tee {
            builder: &mut builder,
            extra,
        },
    )
    .map_err(|source| PodsError::FileParse {
        path: path.to_owned(),
        cause: source,
    })?;
    tracing::info!(
        "pods: read {} pods from {}, {} counted",
        meta.items,
        path.display(),
        builder.pods_counted()
    );
    Ok(Listing {
        gathered: builder.finish(),
        pages: 1,
        restarts: 0,
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::tests::{pod, D1, D2};

    fn write_list(dir: &Path, pods: &[Pod]) -> PathBuf {
        let path = dir.join("pods.json");
        let doc = serde_json::json!({
            "apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
            "items": pods,
        });
        std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
        path
    }

    #[test]
    fn file_listing_builds_shapes_and_feeds_the_extra_sink() {
        let dir = tempfile::tempdir().unwrap();
        let pods = vec![
            pod("a", "p1", "n1", &[("app", D1)]),
            pod("a", "p2", "n1", &[("app", D1)]),
            pod("b", "p1", "n2", &[("app", D2)]),
        ];
        let path = write_list(dir.path(), &pods);
        let mut names = Vec::new();
        let listing = list_from_file(&path, &ListOptions::default(), &mut |p: Pod| {
            names.push(p.metadata.name)
        })
        .unwrap();
        assert_eq!(names, ["p1", "p2", "p1"]);
        assert_eq!(listing.gathered.info.pod_count, 3);
        assert_eq!(listing.gathered.info.shape_count(), 2);
        assert_eq!(listing.gathered.container_ids.total(), 2);
    }

    #[test]
    fn file_listing_respects_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let pods: Vec<Pod> = (0..5)
            .map(|i| pod("a", &format!("p{i}"), "n", &[("app", D1)]))
            .collect();
        let path = write_list(dir.path(), &pods);
        let opts = ListOptions {
            limit: 4,
            ..Default::default()
        };
        let mut seen = 0;
        let listing = list_from_file(&path, &opts, &mut |_p: Pod| seen += 1).unwrap();
        assert!(listing.gathered.limit_reached);
        assert_eq!(listing.gathered.info.pod_count, 4);
        assert_eq!(seen, 5, "extractor pods are looked for in the whole file");
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.json");
        let e = list_from_file(&missing, &ListOptions::default(), &mut |_p: Pod| {}).unwrap_err();
        assert!(e.to_string().contains("nope.json"), "{e}");
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, b"{\"items\": [1]}").unwrap();
        let e = list_from_file(&bad, &ListOptions::default(), &mut |_p: Pod| {}).unwrap_err();
        assert!(e.to_string().contains("not a valid PodList"), "{e}");
    }
}
