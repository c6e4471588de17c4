//! Image details from the OpenShift image API (`image.openshift.io/v1` Image): layers,
//! hashed external repository, first entrypoint/cmd. On plain Kubernetes the API does not
//! exist: it is skipped quietly and the images are still counted.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use runtime_info::workload_hash;
use serde_json::Value;

use crate::output::WorkloadImage;
use crate::shape::hash_argument;

pub const IMAGE_GROUP: &str = "image.openshift.io";
pub const IMAGE_VERSION: &str = "v1";

/// The reference's `getExternalImageRepo`: references from Red Hat are not reported.
pub fn external_image_repo(reference: &str) -> &str {
    if reference.contains("redhat") {
        ""
    } else {
        reference
    }
}

/// Case-insensitive field lookup, as Go's `encoding/json` matches struct fields.
fn field<'a>(obj: &'a Value, name: &str) -> Option<&'a Value> {
    let map = obj.as_object()?;
    map.get(name).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn first_string<'a>(obj: Option<&'a Value>, name: &str) -> Option<&'a str> {
    field(obj?, name)?.as_array()?.first()?.as_str()
}

/// The reference's `calculateWorkloadInfo`, from an Image object's JSON.
pub fn calculate_workload_image(image: &Value) -> WorkloadImage {
    let layer_ids = image
        .get("dockerImageLayers")
        .and_then(Value::as_array)
        .map(|layers| {
            layers
                .iter()
                .map(|l| {
                    l.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default();
    let reference = image
        .get("dockerImageReference")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let repo = external_image_repo(reference);
    let mut info = WorkloadImage {
        layer_ids,
        repository: if repo.is_empty() {
            String::new()
        } else {
            workload_hash(repo)
        },
        ..Default::default()
    };
    // `dockerImageMetadata` is a docker10.DockerImage; only its ContainerConfig is read.
    let config = image
        .get("dockerImageMetadata")
        .and_then(|m| field(m, "ContainerConfig"));
    if let Some(entrypoint) = first_string(config, "Entrypoint") {
        info.first_command = hash_argument(entrypoint);
    }
    if let Some(cmd) = first_string(config, "Cmd") {
        info.first_arg = hash_argument(cmd);
    }
    info
}

/// A small LRU cache of image details (the reference keeps one across gathers).
#[derive(Debug, Clone)]
pub struct ImageCache {
    max_entries: usize,
    tick: u64,
    entries: HashMap<String, (u64, WorkloadImage)>,
}

impl ImageCache {
    pub fn new(max_entries: usize) -> Self {
        ImageCache {
            max_entries,
            tick: 0,
            entries: HashMap::new(),
        }
    }

    /// `0` means unbounded, as the reference's `lru.Cache.MaxEntries`.
    pub fn resize(&mut self, max_entries: usize) {
        self.max_entries = max_entries;
        self.evict();
    }

    pub fn get(&mut self, id: &str) -> Option<WorkloadImage> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(id).map(|(t, image)| {
            *t = tick;
            image.clone()
        })
    }

    pub fn add(&mut self, id: &str, image: WorkloadImage) {
        self.tick += 1;
        self.entries.insert(id.to_owned(), (self.tick, image));
        self.evict();
    }

    fn evict(&mut self) {
        while self.max_entries > 0 && self.entries.len() > self.max_entries {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.entries.remove(&k),
                None => break,
            };
        }
    }
}

/// Whether the image API could be used.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ImageApiState {
    /// Served by the cluster (OpenShift).
    Present,
    /// Not served (plain Kubernetes): images are counted only.
    Absent,
    /// Not asked (`--pods-file`).
    NotQueried,
    /// Discovery failed; images are counted only.
    Failed,
}

/// Image details for the report.
#[derive(Debug, Clone)]
pub struct ImagesOutcome {
    /// Images with at least one layer.
    pub images: BTreeMap<String, WorkloadImage>,
    /// Unique image IDs (found or not): the report's `imageCount`.
    pub count: usize,
    pub api: ImageApiState,
    /// Images the API answered for.
    pub found: usize,
    pub errors: Vec<String>,
    pub elapsed: Duration,
}

/// How image details are fetched.
#[derive(Debug, Clone)]
pub struct ImageOptions {
    pub concurrency: usize,
    /// Overall budget; images not fetched by then are only counted (the reference waits
    /// `pods/10 s + 15 s` and then drops all image data).
    pub deadline: Duration,
}

impl ImageOptions {
    /// The reference's wait: one second per ten pods plus fifteen seconds.
    pub fn for_pods(pods: usize) -> Self {
        ImageOptions {
            concurrency: 8,
            deadline: Duration::from_secs(pods as u64 / 10) + Duration::from_secs(15),
        }
    }
}

/// Whether `image.openshift.io/v1` serves `images`.
pub async fn discover_image_api(client: &kube::Client) -> Result<bool, kube::Error> {
    match client
        .list_api_group_resources(&format!("{IMAGE_GROUP}/{IMAGE_VERSION}"))
        .await
    {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == "images")),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

fn outcome(ids: &[String], api: ImageApiState, start: Instant) -> ImagesOutcome {
    ImagesOutcome {
        images: BTreeMap::new(),
        count: ids.len(),
        api,
        found: 0,
        errors: Vec::new(),
        elapsed: start.elapsed(),
    }
}

/// Counts `ids` (unique image IDs) and fetches their details when the API exists.
pub async fn gather_images(
    client: Option<&kube::Client>,
    ids: &[String],
    cache: &mut ImageCache,
    opts: &ImageOptions,
) -> ImagesOutcome {
    let start = Instant::now();
    let Some(client) = client else {
        return outcome(ids, ImageApiState::NotQueried, start);
    };
    match discover_image_api(client).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(
                "images: the OpenShift image API is not served here; counting images only"
            );
            return outcome(ids, ImageApiState::Absent, start);
        }
        Err(e) => {
            let mut out = outcome(ids, ImageApiState::Failed, start);
            out.errors.push(format!(
                "cannot discover the {IMAGE_GROUP}/{IMAGE_VERSION} API: {e}"
            ));
            return out;
        }
    }
    let gvk = GroupVersionKind::gvk(IMAGE_GROUP, IMAGE_VERSION, "Image");
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk));
    let mut out = outcome(ids, ImageApiState::Present, start);
    let mut fetched: HashMap<String, WorkloadImage> = HashMap::new();
    let mut to_fetch = Vec::new();
    for id in ids {
        match cache.get(id) {
            Some(image) => {
                fetched.insert(id.clone(), image);
            }
            None => to_fetch.push(id.clone()),
        }
    }
    let mut results = futures::stream::iter(to_fetch)
        .map(|id| {
            let api = api.clone();
            async move {
                let r = api.get_opt(&id).await;
                (id, r)
            }
        })
        .buffer_unordered(opts.concurrency.max(1));
    let deadline = tokio::time::sleep(opts.deadline);
    tokio::pin!(deadline);
    let mut unfinished = false;
    loop {
        tokio::select! {
            next = results.next() => match next {
                None => break,
                Some((id, Ok(Some(obj)))) => {
                    let image = calculate_workload_image(&obj.data);
                    cache.add(&id, image.clone());
                    fetched.insert(id, image);
                }
                Some((id, Ok(None))) => tracing::debug!("images: no image {id}"),
                Some((id, Err(e))) => {
                    tracing::warn!("images: unable to retrieve image {id}: {e}");
                    out.errors.push(format!("unable to retrieve image {id}: {e}"));
                }
            },
            () = &mut deadline => { unfinished = true; break; }
        }
    }
    if unfinished {
        out.errors.push(format!(
            "image details not complete after {:?}; the remaining images are only counted",
            opts.deadline
        ));
    }
    out.found = fetched.len();
    out.images = fetched
        .into_iter()
        .filter(|(_, image)| !image.layer_ids.is_empty())
        .collect();
    out.elapsed = start.elapsed();
    tracing::info!(
        "images: {} unique, {} found in the image API",
        out.count,
        out.found
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test_getExternalImageRepo.
    #[test]
    fn test_get_external_image_repo() {
        assert_eq!(
            external_image_repo(
                "registry.redhat.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:abc"
            ),
            ""
        );
        let quay = "quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:abc";
        assert_eq!(external_image_repo(quay), quay);
    }

    /// Test_workloadImageCache.
    #[test]
    fn test_workload_image_cache() {
        let mut cache = ImageCache::new(500);
        cache.resize(10);
        let image = WorkloadImage {
            layer_ids: vec!["layer1".into(), "layer2".into()],
            ..Default::default()
        };
        cache.add("sha256:test", image.clone());
        assert_eq!(cache.get("sha256:test").unwrap().layer_ids, image.layer_ids);
        assert!(cache.get("sha256:nonexistent").is_none());
    }

    #[test]
    fn cache_evicts_the_least_recently_used() {
        let mut cache = ImageCache::new(2);
        cache.add("a", WorkloadImage::default());
        cache.add("b", WorkloadImage::default());
        assert!(cache.get("a").is_some());
        cache.add("c", WorkloadImage::default());
        assert!(cache.get("b").is_none());
        assert!(cache.get("a").is_some() && cache.get("c").is_some());
        cache.resize(0);
        for i in 0..10 {
            cache.add(&i.to_string(), WorkloadImage::default());
        }
        assert!(cache.get("0").is_some(), "0 means unbounded");
    }

    #[test]
    fn workload_image_from_an_image_object() {
        let image = serde_json::json!({
            "metadata": {"name": "sha256:abc"},
            "dockerImageReference": "quay.io/org/app@sha256:abc",
            "dockerImageLayers": [{"name": "sha256:l1", "size": 1}, {"name": "sha256:l2"}],
            "dockerImageMetadata": {
                "Config": {"Entrypoint": ["/ignored"]},
                "ContainerConfig": {"Entrypoint": ["/usr/bin/node", "x"], "Cmd": ["--port=8080"]}
            },
            "dockerImageMetadataVersion": "1.0"
        });
        let w = calculate_workload_image(&image);
        assert_eq!(w.layer_ids, vec!["sha256:l1", "sha256:l2"]);
        assert_eq!(w.repository, workload_hash("quay.io/org/app@sha256:abc"));
        assert_eq!(w.first_command, workload_hash("node"));
        assert_eq!(w.first_arg, workload_hash("--port"));

        let rh = serde_json::json!({
            "dockerImageReference": "registry.redhat.io/ubi9@sha256:abc",
            "dockerImageMetadata": {"containerConfig": {"cmd": ["bash"]}}
        });
        let w = calculate_workload_image(&rh);
        assert!(w.layer_ids.is_empty());
        assert_eq!(w.repository, "");
        assert_eq!(w.first_command, "");
        assert_eq!(
            w.first_arg,
            workload_hash("bash"),
            "Go matches field names case-insensitively"
        );
        assert_eq!(
            serde_json::to_string(&calculate_workload_image(&serde_json::json!({}))).unwrap(),
            r#"{"layerIDs":[]}"#
        );
    }
}
