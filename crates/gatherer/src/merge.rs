//! Runtime info from the extractors → the shapes (regular containers of the first pod of
//! each shape, looked up by (namespace, pod, container ID)).

use std::collections::HashMap;

use runtime_info::ContainerRuntimeInfo;

use crate::output::{RuntimeKey, WorkloadPods};

/// Runtime info of every container answered by the extractors.
pub type RuntimeInfos = HashMap<RuntimeKey, ContainerRuntimeInfo>;

/// The reference's `mergeWorkloads`: a node's entries overwrite identical keys.
pub fn merge_workloads(global: &mut RuntimeInfos, node: RuntimeInfos) {
    global.extend(node);
}

/// The reference's `mergeRuntimeInfoIntoShapes`. Init containers never get runtime info.
/// Returns how many container shapes received some.
pub fn merge_runtime_info_into_shapes(info: &mut WorkloadPods, infos: &RuntimeInfos) -> usize {
    let mut merged = 0;
    for ns in info.namespaces.iter_mut().flat_map(|m| m.values_mut()) {
        for shape in &mut ns.shapes {
            for c in &mut shape.containers {
                if let Some(ri) = infos.get(&c.runtime_key) {
                    c.runtime_info = Some(ri.clone());
                    merged += 1;
                }
            }
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::output::{ContainerShape, NamespacePods, PodShape};

    fn info(os: &str, kind: &str) -> ContainerRuntimeInfo {
        ContainerRuntimeInfo {
            os: os.into(),
            kind: kind.into(),
            ..Default::default()
        }
    }

    fn doc(init: Vec<ContainerShape>, containers: Vec<ContainerShape>) -> WorkloadPods {
        let mut namespaces = BTreeMap::new();
        namespaces.insert(
            "h".to_owned(),
            NamespacePods {
                count: 1,
                shapes: vec![PodShape {
                    init_containers: init,
                    containers,
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        WorkloadPods {
            pod_count: 1,
            namespaces: Some(namespaces),
            ..Default::default()
        }
    }

    fn container(k: RuntimeKey) -> ContainerShape {
        ContainerShape {
            image_id: "sha256:x".into(),
            runtime_key: k,
            ..Default::default()
        }
    }

    fn shape(d: &WorkloadPods) -> &PodShape {
        &d.namespaces.as_ref().unwrap()["h"].shapes[0]
    }

    /// Test_mergeRuntimeInfoIntoShapes: "merges into matching".
    #[test]
    fn merges_into_matching() {
        let k = RuntimeKey::new("test-ns", "test-pod", "cri-o://container-1");
        let mut d = doc(vec![], vec![container(k.clone())]);
        let infos = RuntimeInfos::from([(k, info("rhel", "java"))]);
        assert_eq!(merge_runtime_info_into_shapes(&mut d, &infos), 1);
        let ri = shape(&d).containers[0].runtime_info.as_ref().unwrap();
        assert_eq!((ri.os.as_str(), ri.kind.as_str()), ("rhel", "java"));
    }

    /// "non-matching".
    #[test]
    fn non_matching_is_left_alone() {
        let mut d = doc(
            vec![],
            vec![container(RuntimeKey::new(
                "test-ns",
                "test-pod",
                "cri-o://container-1",
            ))],
        );
        let infos = RuntimeInfos::from([(
            RuntimeKey::new("other-ns", "other-pod", "cri-o://container-1"),
            info("rhel", "java"),
        )]);
        assert_eq!(merge_runtime_info_into_shapes(&mut d, &infos), 0);
        assert!(shape(&d).containers[0].runtime_info.is_none());
    }

    /// "only regular containers".
    #[test]
    fn only_regular_containers() {
        let ki = RuntimeKey::new("ns", "pod", "cri-o://init-container");
        let ka = RuntimeKey::new("ns", "pod", "cri-o://app-container");
        let mut d = doc(vec![container(ki.clone())], vec![container(ka.clone())]);
        let infos = RuntimeInfos::from([(ki, info("rhel", "java")), (ka, info("rhel", "nodejs"))]);
        merge_runtime_info_into_shapes(&mut d, &infos);
        assert!(shape(&d).init_containers[0].runtime_info.is_none());
        let ri = shape(&d).containers[0].runtime_info.as_ref().unwrap();
        assert_eq!((ri.os.as_str(), ri.kind.as_str()), ("rhel", "nodejs"));
    }

    /// TestMergeWokloads: "global is empty".
    #[test]
    fn merge_workloads_into_empty_global() {
        let node = RuntimeInfos::from([(
            RuntimeKey::new("A", "pod-A", "container-foo"),
            info("linux", "test-kind"),
        )]);
        let mut global = RuntimeInfos::new();
        merge_workloads(&mut global, node.clone());
        assert_eq!(global, node);
    }

    /// TestMergeWokloads: "global has some existing data".
    #[test]
    fn merge_workloads_overwrites_and_adds() {
        let mut global = RuntimeInfos::from([
            (
                RuntimeKey::new("A", "pod-A", "container-foo"),
                info("linux", "test-kind"),
            ),
            (
                RuntimeKey::new("A", "pod-A", "container-bar"),
                info("linux", "bar-kind"),
            ),
            (
                RuntimeKey::new("B", "pod-B", "container-baz"),
                info("linux", "baz-kind"),
            ),
        ]);
        let node = RuntimeInfos::from([
            (
                RuntimeKey::new("A", "pod-A", "container-foo"),
                info("linux", "updated-kind"),
            ),
            (
                RuntimeKey::new("C", "pod-C", "container-test-C"),
                info("linux", "c-kind"),
            ),
        ]);
        merge_workloads(&mut global, node);
        assert_eq!(global.len(), 4);
        assert_eq!(
            global[&RuntimeKey::new("A", "pod-A", "container-foo")].kind,
            "updated-kind"
        );
        assert_eq!(
            global[&RuntimeKey::new("A", "pod-A", "container-bar")].kind,
            "bar-kind"
        );
        assert_eq!(
            global[&RuntimeKey::new("B", "pod-B", "container-baz")].kind,
            "baz-kind"
        );
        assert_eq!(
            global[&RuntimeKey::new("C", "pod-C", "container-test-C")].kind,
            "c-kind"
        );
    }
}
