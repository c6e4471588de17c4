//! Pods → anonymised shapes, as the reference operator's `workloadInfo` builds them:
//! namespace hashing, argument normalisation, image IDs, counters, dedup, the pod limit,
//! and the per-node container IDs of the first pod of each new shape.

use std::collections::{BTreeMap, HashMap, HashSet};

use runtime_info::workload_hash;

use crate::image_ref::id_for_image_reference;
use crate::kube_types::{Container, ContainerStatus, Pod, PodSink};
use crate::output::{ContainerShape, NamespacePods, PodShape, RuntimeKey, WorkloadPods};

/// The reference's `podsLimit`.
pub const PODS_LIMIT: usize = 8000;

/// Error text of the reference when more pods exist than the limit.
pub fn limit_reached_message(limit: usize) -> String {
    format!("the {limit} limit for number of pods gathered was reached")
}

/// The reference's `workloadArgumentString`: keep only the program name of a command
/// or the name of a flag, never a user value.
pub fn workload_argument_string(s: &str) -> &str {
    // `trim` and Go's `strings.TrimSpace` strip the same (Unicode White_Space) set.
    let mut s = s.trim();
    // A multi-part script string: keep the first part.
    if let Some(i) = s.find(' ') {
        s = &s[..i];
    }
    // A flag: drop its value (or everything when it has no `=`).
    if s.starts_with('-') {
        match s.find('=') {
            Some(i) => s = &s[..i],
            None => return "",
        }
    }
    // A path: keep the last element (`/usr/bin/bash` → `bash`, `c:\foo\bar` → `bar`).
    s = s.trim_matches(|c| c == '/' || c == '\\');
    if let Some(i) = s.rfind('/') {
        s = &s[i + 1..];
    } else if let Some(i) = s.rfind('\\') {
        s = &s[i + 1..];
    }
    s
}

/// Normalise then hash (always, `""` included), as for `firstCommand`/`firstArg`.
pub(crate) fn hash_argument(s: &str) -> String {
    workload_hash(workload_argument_string(s))
}

/// The reference's `matchingSpecIndex`: `hint` first, then a linear search.
pub fn matching_spec_index(name: &str, spec: &[Container], hint: usize) -> Option<usize> {
    if spec.get(hint).is_some_and(|c| c.name == name) {
        return Some(hint);
    }
    spec.iter().position(|c| c.name == name)
}

/// Phase `Succeeded` or `Failed`.
pub fn is_pod_terminated(pod: &Pod) -> bool {
    matches!(pod.status.phase.as_str(), "Succeeded" | "Failed")
}

/// Not Running/Pending, or a status list that does not match the spec list in length.
pub fn pod_can_be_ignored(pod: &Pod) -> bool {
    !matches!(pod.status.phase.as_str(), "Running" | "Pending")
        || pod.status.init_container_statuses.len() != pod.spec.init_containers.len()
        || pod.status.container_statuses.len() != pod.spec.containers.len()
}

/// The reference's `calculateWorkloadContainerShapes` (iterates the STATUS entries).
fn container_shapes(
    pod: &Pod,
    spec: &[Container],
    status: &[ContainerStatus],
) -> Option<Vec<ContainerShape>> {
    let mut shapes = Vec::with_capacity(status.len());
    for (i, st) in status.iter().enumerate() {
        let Some(index) = matching_spec_index(&st.name, spec, i) else {
            tracing::warn!(
                namespace = %pod.metadata.namespace,
                pod = %pod.metadata.name,
                "unable to match {} to a container spec",
                st.name
            );
            return None;
        };
        let c = &spec[index];
        let mut image_id = id_for_image_reference(
            st.image_id
                .strip_prefix("docker-pullable://")
                .unwrap_or(&st.image_id),
        );
        if image_id.is_empty() {
            image_id = id_for_image_reference(&c.image);
        }
        if image_id.is_empty() {
            return None;
        }
        shapes.push(ContainerShape {
            image_id,
            first_command: c
                .command
                .first()
                .map(|s| hash_argument(s))
                .unwrap_or_default(),
            first_arg: c.args.first().map(|s| hash_argument(s)).unwrap_or_default(),
            runtime_info: None,
            runtime_key: RuntimeKey {
                namespace: pod.metadata.namespace.clone(),
                pod: pod.metadata.name.clone(),
                container_id: st.container_id.clone(),
            },
        });
    }
    Some(shapes)
}

/// The reference's `calculatePodShape`; `None` makes the pod "invalid".
pub fn calculate_pod_shape(pod: &Pod) -> Option<PodShape> {
    let init_containers = container_shapes(
        pod,
        &pod.spec.init_containers,
        &pod.status.init_container_statuses,
    )?;
    let containers = container_shapes(pod, &pod.spec.containers, &pod.status.container_statuses)?;
    Some(PodShape {
        duplicates: 0,
        restart_always: pod.spec.restart_policy == "Always",
        init_containers,
        containers,
    })
}

/// Equal lengths and pairwise equal image ID, first arg and first command.
pub fn container_shapes_equal(a: &[ContainerShape], b: &[ContainerShape]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.image_id == y.image_id
                && x.first_arg == y.first_arg
                && x.first_command == y.first_command
        })
}

/// The reference's `workloadPodShapeIndex` (searches from the last shape backwards).
/// Restart policy and runtime info are not compared.
pub fn pod_shape_index(shapes: &[PodShape], shape: &PodShape) -> Option<usize> {
    shapes.iter().rposition(|existing| {
        container_shapes_equal(&existing.init_containers, &shape.init_containers)
            && container_shapes_equal(&existing.containers, &shape.containers)
    })
}

/// The identity of a shape for the dedup index: what [`pod_shape_index`] compares.
type ShapeKey = (Vec<[String; 3]>, Vec<[String; 3]>);

fn shape_key(shape: &PodShape) -> ShapeKey {
    let k = |cs: &[ContainerShape]| {
        cs.iter()
            .map(|c| {
                [
                    c.image_id.clone(),
                    c.first_command.clone(),
                    c.first_arg.clone(),
                ]
            })
            .collect()
    };
    (k(&shape.init_containers), k(&shape.containers))
}

/// Node name → container IDs to ask that node's extractor about, in discovery order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerIdsByNode(pub BTreeMap<String, Vec<String>>);

impl ContainerIdsByNode {
    /// The reference's `addPodContainers`: Running pods only; regular containers that are
    /// not terminated (running or waiting) and have an ID.
    pub fn add_pod_containers(&mut self, pod: &Pod) {
        if pod.status.phase != "Running" {
            return;
        }
        for st in &pod.status.container_statuses {
            if st.state.is_terminated() || st.container_id.is_empty() {
                continue;
            }
            self.0
                .entry(pod.spec.node_name.clone())
                .or_default()
                .push(st.container_id.clone());
        }
    }

    pub fn total(&self) -> usize {
        self.0.values().map(Vec::len).sum()
    }

    /// Only the IDs an extractor can accept (`<runtime>://<64 hex>` or 64 hex), and the others:
    /// one malformed ID in the cluster must not cost a node its whole answer (the extractor
    /// rejects a request naming a malformed ID with 400).
    pub fn split_valid(&self) -> (ContainerIdsByNode, Vec<String>) {
        let mut valid = ContainerIdsByNode::default();
        let mut invalid = Vec::new();
        for (node, ids) in &self.0 {
            for id in ids {
                if id.parse::<runtime_info::ContainerId>().is_ok() {
                    valid.0.entry(node.clone()).or_default().push(id.clone());
                } else {
                    invalid.push(id.clone());
                }
            }
        }
        (valid, invalid)
    }
}

/// A namespace being filled, with its dedup index.
struct OpenNamespace {
    name: String,
    pods: NamespacePods,
    index: HashMap<ShapeKey, usize>,
}

/// Everything the listing produces; pods themselves are never kept.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gathered {
    pub info: WorkloadPods,
    pub container_ids: ContainerIdsByNode,
    pub limit_reached: bool,
    /// Unique image IDs of all shapes, in first-seen order.
    pub image_ids: Vec<String>,
    /// Pods handed to the builder (including any past the limit).
    pub pods_seen: usize,
}

/// Builds shapes pod by pod, exactly as the reference's listing loop.
pub struct ShapeBuilder {
    limit: usize,
    info: WorkloadPods,
    /// Namespaces already closed, by name, so a namespace listed in two runs is
    /// continued instead of overwritten (the API lists pods grouped by namespace; a
    /// hand-made pods file might not).
    closed: HashMap<String, (String, HashMap<ShapeKey, usize>)>,
    current: Option<OpenNamespace>,
    container_ids: ContainerIdsByNode,
    limit_reached: bool,
    image_ids: Vec<String>,
    image_seen: HashSet<String>,
    pods_seen: usize,
}

impl ShapeBuilder {
    pub fn new(limit: usize) -> Self {
        ShapeBuilder {
            limit,
            info: WorkloadPods::default(),
            closed: HashMap::new(),
            current: None,
            container_ids: ContainerIdsByNode::default(),
            limit_reached: false,
            image_ids: Vec::new(),
            image_seen: HashSet::new(),
            pods_seen: 0,
        }
    }

    pub fn limit_reached(&self) -> bool {
        self.limit_reached
    }

    /// Pods counted so far (closed namespaces plus the open one).
    pub fn pods_counted(&self) -> usize {
        self.info.pod_count + self.current.as_ref().map_or(0, |c| c.pods.count)
    }

    fn close_current(&mut self) {
        if let Some(open) = self.current.take() {
            let hash = workload_hash(&open.name);
            self.info.pod_count += open.pods.count;
            self.info
                .namespaces
                .get_or_insert_with(BTreeMap::new)
                .insert(hash.clone(), open.pods);
            self.closed.insert(open.name, (hash, open.index));
        }
    }

    fn open(&mut self, namespace: &str) {
        self.close_current();
        let reopened = self.closed.remove(namespace).and_then(|(hash, index)| {
            let pods = self.info.namespaces.as_mut()?.remove(&hash)?;
            self.info.pod_count -= pods.count;
            Some((pods, index))
        });
        let (pods, index) = reopened.unwrap_or_default();
        self.current = Some(OpenNamespace {
            name: namespace.to_owned(),
            pods,
            index,
        });
    }

    /// Adds one pod. Returns `false` once the pod limit has been reached (the pod that
    /// hit it and every later one are not counted).
    pub fn add_pod(&mut self, pod: &Pod) -> bool {
        if self.limit_reached {
            return false;
        }
        self.pods_seen += 1;
        let namespace = pod.metadata.namespace.as_str();
        if self.current.as_ref().is_none_or(|c| c.name != namespace) {
            self.open(namespace);
        }
        let counted = self.info.pod_count;
        let Some(open) = self.current.as_mut() else {
            return false;
        };
        // Checked before counting: at most `limit` pods are counted, and the limit is
        // "reached" only when one more pod exists.
        if counted >= self.limit || counted + open.pods.count >= self.limit {
            self.limit_reached = true;
            return false;
        }
        open.pods.count += 1;
        if is_pod_terminated(pod) {
            open.pods.terminal_count += 1;
            return true;
        }
        if pod_can_be_ignored(pod) {
            open.pods.ignored_count += 1;
            return true;
        }
        let Some(shape) = calculate_pod_shape(pod) else {
            open.pods.invalid_count += 1;
            return true;
        };
        let key = shape_key(&shape);
        if let Some(&i) = open.index.get(&key) {
            open.pods.shapes[i].duplicates += 1;
            return true;
        }
        open.index.insert(key, open.pods.shapes.len());
        for c in shape.init_containers.iter().chain(&shape.containers) {
            if self.image_seen.insert(c.image_id.clone()) {
                self.image_ids.push(c.image_id.clone());
            }
        }
        open.pods.shapes.push(shape);
        self.container_ids.add_pod_containers(pod);
        true
    }

    pub fn finish(mut self) -> Gathered {
        self.close_current();
        Gathered {
            info: self.info,
            container_ids: self.container_ids,
            limit_reached: self.limit_reached,
            image_ids: self.image_ids,
            pods_seen: self.pods_seen,
        }
    }
}

impl PodSink for ShapeBuilder {
    fn pod(&mut self, pod: Pod) {
        self.add_pod(&pod);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::kube_types::{ContainerState, ObjectMeta, PodSpec, PodStatus};

    pub(crate) const D1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    pub(crate) const D2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    pub(crate) fn container(name: &str, image: &str) -> Container {
        Container {
            name: name.into(),
            image: image.into(),
            ..Default::default()
        }
    }

    pub(crate) fn status(name: &str, image_id: &str, id: &str) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            image_id: image_id.into(),
            container_id: id.into(),
            state: ContainerState::default(),
        }
    }

    fn terminated() -> ContainerState {
        ContainerState {
            terminated: Some(serde_json::json!({"exitCode": 0})),
        }
    }

    /// A Running pod with one container per (name, digest) pair.
    pub(crate) fn pod(ns: &str, name: &str, node: &str, containers: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: name.into(),
                namespace: ns.into(),
                ..Default::default()
            },
            spec: PodSpec {
                node_name: node.into(),
                restart_policy: "Always".into(),
                init_containers: vec![],
                containers: containers
                    .iter()
                    .map(|(n, d)| container(n, &format!("registry.io/{n}@sha256:{d}")))
                    .collect(),
            },
            status: PodStatus {
                phase: "Running".into(),
                pod_ip: String::new(),
                init_container_statuses: vec![],
                container_statuses: containers
                    .iter()
                    .map(|(n, d)| {
                        status(
                            n,
                            &format!("registry.io/{n}@sha256:{d}"),
                            &format!("cri-o://{ns}-{name}-{n}"),
                        )
                    })
                    .collect(),
            },
        }
    }

    fn cshape(image: &str, cmd: &str, arg: &str) -> ContainerShape {
        ContainerShape {
            image_id: image.into(),
            first_command: cmd.into(),
            first_arg: arg.into(),
            ..Default::default()
        }
    }

    // ---- Ported from the reference's gather_workloads_info_test.go ----

    #[test]
    fn test_workload_argument_string() {
        let cases = [
            ("bash", "bash"),
            (" bash ", "bash"),
            ("bash -c 'echo hello'", "bash"),
            ("-v", ""),
            ("--config=/path/to/config", "--config"),
            ("/usr/local/bin/node", "node"),
            (r"c:\windows\system32\cmd.exe", "cmd.exe"),
        ];
        for (input, want) in cases {
            assert_eq!(workload_argument_string(input), want, "{input:?}");
        }
    }

    #[test]
    fn workload_argument_string_edge_cases() {
        assert_eq!(workload_argument_string(""), "");
        assert_eq!(workload_argument_string("/"), "");
        assert_eq!(workload_argument_string("/usr/bin/"), "bin");
        assert_eq!(workload_argument_string("--a=b=c"), "--a");
        assert_eq!(workload_argument_string("-=x"), "-");
        assert_eq!(workload_argument_string(r"a/b\c"), r"b\c");
        assert_eq!(workload_argument_string("\tpython3\n"), "python3");
        // Only the ASCII space splits, as Go's strings.Index(s, " ").
        assert_eq!(workload_argument_string("a\tb"), "a\tb");
    }

    #[test]
    fn test_workload_hash_string() {
        let a = workload_hash("test1");
        let b = workload_hash("test2");
        assert_ne!(a, b);
        assert_eq!(a.len(), 12);
        assert_eq!(b.len(), 12);
        assert_eq!(a, "G08OmFGXGZjn");
        assert_eq!(b, "YDA64iuZiGG8");
        assert_eq!(
            hash_argument("-v"),
            "47DEQpj8HBSa",
            "an empty argument is hashed too"
        );
    }

    #[test]
    fn test_matching_spec_index() {
        let spec = [
            container("init", "i"),
            container("app", "a"),
            container("sidecar", "s"),
        ];
        assert_eq!(matching_spec_index("app", &spec, 1), Some(1));
        assert_eq!(matching_spec_index("sidecar", &spec, 0), Some(2));
        assert_eq!(
            matching_spec_index("missing", &[container("app", "a")], 0),
            None
        );
        assert_eq!(matching_spec_index("app", &spec, 99), Some(1));
    }

    #[test]
    fn test_pod_can_be_ignored() {
        // running pod with all containers
        let mut p = pod("ns", "p", "n", &[("app", D1)]);
        p.spec.init_containers = vec![container("init", "i")];
        p.status.init_container_statuses = vec![status("init", "", "")];
        assert!(!pod_can_be_ignored(&p));
        // terminal pod phases are ignored
        let mut t = p.clone();
        t.status.phase = "Succeeded".into();
        assert!(pod_can_be_ignored(&t));
        // missing container status is ignored
        let mut m = pod("ns", "p", "n", &[("app", D1), ("side", D2)]);
        m.status.container_statuses.pop();
        assert!(pod_can_be_ignored(&m));
        // unknown and empty phases
        for phase in ["Unknown", ""] {
            let mut u = pod("ns", "p", "n", &[("app", D1)]);
            u.status.phase = phase.into();
            assert!(pod_can_be_ignored(&u), "{phase:?}");
        }
        let mut pending = pod("ns", "p", "n", &[("app", D1)]);
        pending.status.phase = "Pending".into();
        assert!(!pod_can_be_ignored(&pending));
    }

    #[test]
    fn test_workload_container_shapes_equal() {
        let abc = vec![cshape("sha256:abc", "cmd1", "arg1")];
        // identical single
        assert!(container_shapes_equal(&abc, &abc.clone()));
        // different image IDs
        assert!(!container_shapes_equal(
            &abc,
            &[cshape("sha256:def", "cmd1", "arg1")]
        ));
        // different lengths
        let two = vec![abc[0].clone(), abc[0].clone()];
        assert!(!container_shapes_equal(&abc, &two));
        // multiple identical
        let multi = [
            cshape("sha256:abc", "cmd1", ""),
            cshape("sha256:def", "", "arg1"),
        ];
        assert!(container_shapes_equal(&multi, &multi.clone()));
        // first arg and first command are compared, runtime info is not
        assert!(!container_shapes_equal(
            &abc,
            &[cshape("sha256:abc", "cmd1", "x")]
        ));
        assert!(!container_shapes_equal(
            &abc,
            &[cshape("sha256:abc", "x", "arg1")]
        ));
        let mut with_info = abc.clone();
        with_info[0].runtime_info = Some(Default::default());
        assert!(container_shapes_equal(&abc, &with_info));
    }

    #[test]
    fn test_workload_pod_shape_index() {
        let shape = |init: Vec<ContainerShape>, c: Vec<ContainerShape>| PodShape {
            init_containers: init,
            containers: c,
            ..Default::default()
        };
        let abc = cshape("sha256:abc", "", "");
        let def = cshape("sha256:def", "", "");
        let shapes = [
            shape(vec![], vec![abc.clone()]),
            shape(vec![], vec![def.clone()]),
        ];
        assert_eq!(
            pod_shape_index(&shapes, &shape(vec![], vec![def.clone()])),
            Some(1)
        );
        assert_eq!(
            pod_shape_index(
                &[shape(vec![], vec![abc.clone()])],
                &shape(vec![], vec![cshape("sha256:xyz", "", "")])
            ),
            None
        );
        let with_init = [shape(
            vec![cshape("sha256:init", "", "")],
            vec![abc.clone()],
        )];
        assert_eq!(
            pod_shape_index(
                &with_init,
                &shape(vec![cshape("sha256:init", "", "")], vec![abc.clone()])
            ),
            Some(0)
        );
        // restartAlways is not compared
        let mut other_policy = shape(vec![], vec![abc.clone()]);
        other_policy.restart_always = true;
        assert_eq!(pod_shape_index(&shapes, &other_policy), Some(0));
    }

    #[test]
    fn test_calculate_pod_shape() {
        // valid pod with containers
        let mut p = pod("ns", "p", "n", &[("app", D1)]);
        p.spec.containers[0].command = vec!["/bin/sh".into()];
        p.spec.containers[0].args = vec!["-c start".into()];
        p.status.container_statuses[0].image_id =
            format!("docker-pullable://registry.io/app@sha256:{D1}");
        let s = calculate_pod_shape(&p).unwrap();
        assert!(s.restart_always);
        assert_eq!(s.containers.len(), 1);
        assert_eq!(s.containers[0].image_id, format!("sha256:{D1}"));
        assert_eq!(s.containers[0].first_command, workload_hash("sh"));
        assert_eq!(
            s.containers[0].first_arg,
            workload_hash(""),
            "`-c` is a flag without value"
        );
        assert_eq!(
            s.containers[0].runtime_key,
            RuntimeKey {
                namespace: "ns".into(),
                pod: "p".into(),
                container_id: "cri-o://ns-p-app".into()
            }
        );

        // pod with init and regular containers
        let mut q = pod("ns", "q", "n", &[("app", D1)]);
        q.spec.restart_policy = "OnFailure".into();
        q.spec.init_containers = vec![container("init", &format!("registry.io/init@sha256:{D2}"))];
        q.status.init_container_statuses = vec![status("init", "", "cri-o://init")];
        let s = calculate_pod_shape(&q).unwrap();
        assert!(!s.restart_always);
        assert_eq!(s.init_containers.len(), 1);
        assert_eq!(
            s.init_containers[0].image_id,
            format!("sha256:{D2}"),
            "from the spec image"
        );

        // pod with missing image ID
        let mut r = pod("ns", "r", "n", &[("app", D1)]);
        r.spec.containers[0].image = "registry.io/app:latest".into();
        r.status.container_statuses[0].image_id = String::new();
        assert!(calculate_pod_shape(&r).is_none());

        // a status that matches no spec makes the pod invalid
        let mut u = pod("ns", "u", "n", &[("app", D1)]);
        u.status.container_statuses[0].name = "ghost".into();
        assert!(calculate_pod_shape(&u).is_none());
    }

    #[test]
    fn shape_follows_status_order_not_spec_order() {
        let mut p = pod("ns", "p", "n", &[("a", D1), ("b", D2)]);
        p.status.container_statuses.reverse();
        let s = calculate_pod_shape(&p).unwrap();
        assert_eq!(s.containers[0].image_id, format!("sha256:{D2}"));
        assert_eq!(s.containers[1].image_id, format!("sha256:{D1}"));
    }

    // ---- containerIDsByNode (ported) ----

    #[test]
    fn test_container_ids_by_node_add_pod_containers() {
        // Running pod adds IDs
        let mut ids = ContainerIdsByNode::default();
        let mut p = pod("ns", "p", "node-1", &[("app", D1)]);
        p.status.container_statuses[0].container_id = "cri-o://abc123".into();
        ids.add_pod_containers(&p);
        assert_eq!(ids.0["node-1"], vec!["cri-o://abc123".to_owned()]);

        // non-Running pod skipped
        let mut ids = ContainerIdsByNode::default();
        let mut pending = p.clone();
        pending.status.phase = "Pending".into();
        ids.add_pod_containers(&pending);
        assert!(ids.0.is_empty());

        // terminated containers skipped
        let mut ids = ContainerIdsByNode::default();
        let mut t = pod("ns", "p", "node-1", &[("app", D1), ("sidecar", D2)]);
        t.status.container_statuses[0].container_id = "cri-o://abc123".into();
        t.status.container_statuses[1].container_id = "cri-o://def456".into();
        t.status.container_statuses[1].state = terminated();
        ids.add_pod_containers(&t);
        assert_eq!(ids.0["node-1"], vec!["cri-o://abc123".to_owned()]);

        // running and waiting containers included, order preserved
        let mut ids = ContainerIdsByNode::default();
        let mut w = t.clone();
        w.status.container_statuses[1].state = ContainerState { terminated: None };
        ids.add_pod_containers(&w);
        assert_eq!(
            ids.0["node-1"],
            vec!["cri-o://abc123".to_owned(), "cri-o://def456".to_owned()]
        );

        // missing container IDs handled gracefully
        let mut ids = ContainerIdsByNode::default();
        let mut m = p.clone();
        m.status.container_statuses[0].container_id = String::new();
        ids.add_pod_containers(&m);
        assert!(ids.0.is_empty(), "no key for a pod without IDs");

        // init containers are never tracked
        let mut ids = ContainerIdsByNode::default();
        let mut i = p.clone();
        i.spec.init_containers = vec![container("init", "x")];
        i.status.init_container_statuses = vec![status("init", "", "cri-o://init")];
        ids.add_pod_containers(&i);
        assert_eq!(ids.total(), 1);
    }

    #[test]
    fn test_container_ids_by_node_multiple_pods() {
        let mut ids = ContainerIdsByNode::default();
        for (name, node, id) in [
            ("pod1", "node-1", "cri-o://abc123"),
            ("pod2", "node-1", "cri-o://def456"),
            ("pod3", "node-2", "cri-o://ghi789"),
        ] {
            let mut p = pod("ns", name, node, &[("app", D1)]);
            p.status.container_statuses[0].container_id = id.into();
            ids.add_pod_containers(&p);
        }
        assert_eq!(ids.0.len(), 2);
        assert_eq!(
            ids.0["node-1"],
            vec!["cri-o://abc123".to_owned(), "cri-o://def456".to_owned()]
        );
        assert_eq!(ids.0["node-2"], vec!["cri-o://ghi789".to_owned()]);
    }

    // ---- The builder (workloadInfo) ----

    #[test]
    fn builder_counts_dedups_and_tracks_first_pod_only() {
        let mut b = ShapeBuilder::new(PODS_LIMIT);
        b.add_pod(&pod("a", "p1", "n1", &[("app", D1)]));
        b.add_pod(&pod("a", "p2", "n2", &[("app", D1)])); // duplicate
        b.add_pod(&pod("a", "p3", "n1", &[("app", D2)])); // new shape
        let mut done = pod("a", "p4", "n1", &[("app", D1)]);
        done.status.phase = "Failed".into();
        b.add_pod(&done);
        let mut unknown = pod("a", "p5", "n1", &[("app", D1)]);
        unknown.status.phase = "Unknown".into();
        b.add_pod(&unknown);
        let mut invalid = pod("a", "p6", "n1", &[("app", D1)]);
        invalid.status.container_statuses[0].image_id = String::new();
        invalid.spec.containers[0].image = "app:latest".into();
        b.add_pod(&invalid);
        b.add_pod(&pod("b", "p1", "n1", &[("app", D1)])); // same shape, other namespace
        let g = b.finish();
        assert!(!g.limit_reached);
        assert_eq!(g.info.pod_count, 7);
        let ns = g.info.namespaces.as_ref().unwrap();
        let a = &ns[&workload_hash("a")];
        assert_eq!(
            (a.count, a.terminal_count, a.ignored_count, a.invalid_count),
            (6, 1, 1, 1)
        );
        assert_eq!(a.shapes.len(), 2);
        assert_eq!(a.shapes[0].duplicates, 1);
        let sum: usize = a.shapes.iter().map(|s| s.duplicates + 1).sum::<usize>()
            + a.terminal_count
            + a.ignored_count
            + a.invalid_count;
        assert_eq!(sum, a.count, "the reference's per-namespace invariant");
        assert_eq!(ns[&workload_hash("b")].shapes.len(), 1);
        // Only the first pod of each new shape is tracked; the duplicate p2 on n2 is not.
        assert_eq!(
            g.container_ids.0["n1"],
            vec!["cri-o://a-p1-app", "cri-o://a-p3-app", "cri-o://b-p1-app"]
        );
        assert!(!g.container_ids.0.contains_key("n2"));
        assert_eq!(
            g.image_ids,
            vec![format!("sha256:{D1}"), format!("sha256:{D2}")]
        );
    }

    #[test]
    fn builder_index_agrees_with_the_linear_search() {
        let mut b = ShapeBuilder::new(PODS_LIMIT);
        let digests = [D1, D2, D1, D1, D2];
        let mut linear: Vec<PodShape> = Vec::new();
        for (i, d) in digests.iter().enumerate() {
            let mut p = pod("ns", &format!("p{i}"), "n", &[("app", d)]);
            p.spec.containers[0].args = vec![format!("arg{}", i % 2)];
            let s = calculate_pod_shape(&p).unwrap();
            match pod_shape_index(&linear, &s) {
                Some(j) => linear[j].duplicates += 1,
                None => linear.push(s),
            }
            b.add_pod(&p);
        }
        let g = b.finish();
        let got = &g.info.namespaces.unwrap()[&workload_hash("ns")].shapes;
        assert_eq!(got, &linear);
    }

    #[test]
    fn limit_counts_exactly_and_is_reached_only_by_one_more_pod() {
        // Exactly `limit` pods: not reached.
        let mut b = ShapeBuilder::new(3);
        for i in 0..3 {
            assert!(b.add_pod(&pod("a", &format!("p{i}"), "n", &[("app", D1)])));
        }
        let g = b.finish();
        assert!(!g.limit_reached);
        assert_eq!(g.info.pod_count, 3);

        // One more: reached, the extra pod is not counted nor tracked.
        let mut b = ShapeBuilder::new(3);
        for i in 0..4 {
            let digest = format!("{i}").repeat(64);
            b.add_pod(&pod(
                "a",
                &format!("p{i}"),
                "n",
                &[(&format!("c{i}"), &digest)],
            ));
        }
        let g = b.finish();
        assert!(g.limit_reached);
        assert_eq!(g.info.pod_count, 3);
        assert_eq!(g.container_ids.total(), 3);
        assert!(!g.container_ids.0["n"].contains(&"cri-o://a-p3-c3".to_owned()));
    }

    #[test]
    fn limit_hit_by_a_new_namespace_emits_it_with_count_zero() {
        // As the reference: the namespace switch happens before the limit check.
        let mut b = ShapeBuilder::new(2);
        b.add_pod(&pod("a", "p1", "n", &[("app", D1)]));
        b.add_pod(&pod("a", "p2", "n", &[("app", D1)]));
        assert!(!b.add_pod(&pod("b", "p1", "n", &[("app", D1)])));
        assert!(!b.add_pod(&pod("c", "p1", "n", &[("app", D1)])));
        let g = b.finish();
        assert!(g.limit_reached);
        let ns = g.info.namespaces.unwrap();
        assert_eq!(ns.len(), 2, "c is never seen");
        let b_ns = &ns[&workload_hash("b")];
        assert_eq!(b_ns.count, 0);
        assert!(b_ns.shapes.is_empty());
        assert_eq!(
            serde_json::to_string(b_ns).unwrap(),
            r#"{"count":0,"shapes":[]}"#
        );
    }

    #[test]
    fn a_namespace_listed_twice_is_continued_not_overwritten() {
        let mut b = ShapeBuilder::new(PODS_LIMIT);
        b.add_pod(&pod("a", "p1", "n", &[("app", D1)]));
        b.add_pod(&pod("b", "p1", "n", &[("app", D1)]));
        b.add_pod(&pod("a", "p2", "n", &[("app", D1)]));
        let g = b.finish();
        assert_eq!(g.info.pod_count, 3);
        let a = &g.info.namespaces.unwrap()[&workload_hash("a")];
        assert_eq!(a.count, 2);
        assert_eq!(a.shapes.len(), 1);
        assert_eq!(a.shapes[0].duplicates, 1);
    }

    #[test]
    fn no_pods_gives_null_namespaces() {
        let g = ShapeBuilder::new(PODS_LIMIT).finish();
        assert_eq!(g.info.namespaces, None);
        assert_eq!(g.info.pod_count, 0);
    }

    #[test]
    fn malformed_container_ids_are_set_aside() {
        let hex = "a".repeat(64);
        let mut ids = ContainerIdsByNode::default();
        ids.0.insert(
            "n1".into(),
            vec![
                format!("cri-o://{hex}"),
                "cri-o://abc123".into(),
                hex.clone(),
            ],
        );
        ids.0.insert("n2".into(), vec!["garbage".into()]);
        let (valid, invalid) = ids.split_valid();
        assert_eq!(valid.0.len(), 1);
        assert_eq!(valid.0["n1"], vec![format!("cri-o://{hex}"), hex]);
        assert_eq!(
            invalid,
            vec!["cri-o://abc123".to_owned(), "garbage".to_owned()]
        );
    }
}
