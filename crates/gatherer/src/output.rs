//! The `config/workload_info.json` document, field for field as the reference operator
//! writes it (Go `encoding/json` with its `omitempty` rules; map keys sorted).

use std::collections::BTreeMap;

use runtime_info::ContainerRuntimeInfo;
use serde::Serialize;

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Top level of `workload_info.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WorkloadPods {
    /// Pods counted (at most the pod limit), Σ of the namespace counts.
    #[serde(rename = "pods")]
    pub pod_count: usize,
    /// Unique image IDs seen in the shapes (found in the image API or not).
    #[serde(rename = "imageCount")]
    pub image_count: usize,
    /// Images known to the OpenShift image API with at least one layer.
    #[serde(rename = "images", skip_serializing_if = "BTreeMap::is_empty")]
    pub images: BTreeMap<String, WorkloadImage>,
    /// Namespace-name hash → namespace. Not omitted: `null` when no pod was listed,
    /// as the reference's lazily created Go map.
    #[serde(rename = "namespaces")]
    pub namespaces: Option<BTreeMap<String, NamespacePods>>,
}

/// What the image API tells about one image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WorkloadImage {
    #[serde(rename = "layerIDs")]
    pub layer_ids: Vec<String>,
    #[serde(rename = "firstCommand", skip_serializing_if = "String::is_empty")]
    pub first_command: String,
    #[serde(rename = "firstArg", skip_serializing_if = "String::is_empty")]
    pub first_arg: String,
    #[serde(rename = "repository", skip_serializing_if = "String::is_empty")]
    pub repository: String,
}

/// Counters and shapes of one namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NamespacePods {
    pub count: usize,
    #[serde(rename = "terminalCount", skip_serializing_if = "is_zero")]
    pub terminal_count: usize,
    #[serde(rename = "ignoredCount", skip_serializing_if = "is_zero")]
    pub ignored_count: usize,
    #[serde(rename = "invalidCount", skip_serializing_if = "is_zero")]
    pub invalid_count: usize,
    /// Never `null` (the reference always allocates the slice).
    pub shapes: Vec<PodShape>,
}

/// One distinct pod shape of a namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PodShape {
    /// Further pods with this shape (the first pod is not counted here).
    #[serde(skip_serializing_if = "is_zero")]
    pub duplicates: usize,
    #[serde(rename = "restartAlways")]
    pub restart_always: bool,
    #[serde(rename = "initContainers", skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<ContainerShape>,
    pub containers: Vec<ContainerShape>,
}

/// Where the runtime info of a container shape comes from: the first pod of the shape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuntimeKey {
    pub namespace: String,
    pub pod: String,
    pub container_id: String,
}

impl RuntimeKey {
    pub fn new(namespace: &str, pod: &str, container_id: &str) -> Self {
        RuntimeKey {
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
            container_id: container_id.to_owned(),
        }
    }
}

/// One container of a shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ContainerShape {
    #[serde(rename = "imageID")]
    pub image_id: String,
    #[serde(rename = "firstCommand", skip_serializing_if = "String::is_empty")]
    pub first_command: String,
    #[serde(rename = "firstArg", skip_serializing_if = "String::is_empty")]
    pub first_arg: String,
    #[serde(rename = "runtimeInfo", skip_serializing_if = "Option::is_none")]
    pub runtime_info: Option<ContainerRuntimeInfo>,
    /// Lookup key for the merge; never serialised.
    #[serde(skip)]
    pub runtime_key: RuntimeKey,
}

impl WorkloadPods {
    /// Compact JSON, as Go's `json.Marshal` writes it.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Number of shapes over all namespaces.
    pub fn shape_count(&self) -> usize {
        self.namespaces
            .iter()
            .flat_map(|m| m.values())
            .map(|ns| ns.shapes.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime_info::RuntimeComponent;

    #[test]
    fn empty_document_has_null_namespaces_and_no_images() {
        let doc = WorkloadPods::default();
        assert_eq!(
            String::from_utf8(doc.to_json().unwrap()).unwrap(),
            r#"{"pods":0,"imageCount":0,"namespaces":null}"#
        );
    }

    #[test]
    fn omitempty_rules_match_the_reference() {
        let mut namespaces = BTreeMap::new();
        namespaces.insert(
            "nsHash".to_owned(),
            NamespacePods {
                count: 3,
                terminal_count: 1,
                ignored_count: 0,
                invalid_count: 0,
                shapes: vec![PodShape {
                    duplicates: 1,
                    restart_always: true,
                    init_containers: vec![],
                    containers: vec![ContainerShape {
                        image_id: "sha256:a".into(),
                        first_command: "cmd".into(),
                        first_arg: String::new(),
                        runtime_info: Some(ContainerRuntimeInfo {
                            os: "o".into(),
                            runtimes: vec![RuntimeComponent {
                                name: "n".into(),
                                version: String::new(),
                            }],
                            ..Default::default()
                        }),
                        runtime_key: RuntimeKey {
                            namespace: "secret-ns".into(),
                            pod: "secret-pod".into(),
                            container_id: "cri-o://x".into(),
                        },
                    }],
                }],
            },
        );
        namespaces.insert(
            "empty".to_owned(),
            NamespacePods {
                count: 0,
                ..Default::default()
            },
        );
        let mut images = BTreeMap::new();
        images.insert(
            "sha256:a".to_owned(),
            WorkloadImage {
                layer_ids: vec!["sha256:l1".into()],
                repository: "repo".into(),
                ..Default::default()
            },
        );
        let doc = WorkloadPods {
            pod_count: 3,
            image_count: 2,
            images,
            namespaces: Some(namespaces),
        };
        let json = String::from_utf8(doc.to_json().unwrap()).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"pods":3,"imageCount":2,"images":{"sha256:a":{"layerIDs":["sha256:l1"],"repository":"repo"}},"#,
                r#""namespaces":{"empty":{"count":0,"shapes":[]},"#,
                r#""nsHash":{"count":3,"terminalCount":1,"shapes":[{"duplicates":1,"restartAlways":true,"#,
                r#""containers":[{"imageID":"sha256:a","firstCommand":"cmd","runtimeInfo":{"os":"o","runtimes":[{"name":"n"}]}}]}]}}}"#
            )
        );
        assert!(
            !json.contains("secret"),
            "the runtime key must never be written"
        );
        assert_eq!(doc.shape_count(), 1);
    }

    #[test]
    fn merged_empty_runtime_info_is_written_as_an_empty_object() {
        // `{"runtimes": []}` from an extractor is kept (as Go keeps it) and marshals as `{}`.
        let c = ContainerShape {
            image_id: "sha256:a".into(),
            runtime_info: Some(ContainerRuntimeInfo::default()),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"imageID":"sha256:a","runtimeInfo":{}}"#
        );
    }
}
