//! [`PodBuilder`]: pods shaped like the ones kube-apiserver returns (spec.containers plus
//! status.containerStatuses with imageID, containerID and state).
//!
//! ```
//! use testkit::pods::{ContainerState, PodBuilder};
//! let pod = PodBuilder::new("shop", "web-0")
//!     .node("worker-1")
//!     .label("app", "web")
//!     .pod_ip("10.128.0.7")
//!     .container(
//!         "web",
//!         "quay.io/shop/web:1.2",
//!         "quay.io/shop/web@sha256:0123456789012345678901234567890123456789012345678901234567890123",
//!         "cri-o://abc123",
//!         ContainerState::Running,
//!     )
//!     .command(["java", "-jar", "/app.jar"])
//!     .build();
//! let status = &pod.status.unwrap().container_statuses.unwrap()[0];
//! assert_eq!(status.container_id.as_deref(), Some("cri-o://abc123"));
//! assert!(status.state.as_ref().unwrap().running.is_some());
//! ```

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

/// State of a container in `status.containerStatuses[].state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerState {
    Running,
    Waiting,
    Terminated,
}

/// Short alias: `State::Running`.
pub type State = ContainerState;

const CREATED: &str = "2025-01-01T00:00:00Z";
const STARTED: &str = "2025-01-01T00:00:05Z";
const FINISHED: &str = "2025-01-01T00:01:00Z";

#[derive(Clone, Debug)]
struct ContainerDef {
    name: String,
    image: String,
    image_id: String,
    container_id: String,
    state: ContainerState,
    command: Vec<String>,
    args: Vec<String>,
    with_status: bool,
    restart_count: i32,
}

/// Builds a [`Pod`]. Defaults: phase `Running`, restartPolicy `Always`, service account
/// `default`, no node, no IP, no containers.
#[derive(Clone, Debug)]
pub struct PodBuilder {
    namespace: String,
    name: String,
    uid: Option<String>,
    node: Option<String>,
    phase: Option<String>,
    labels: BTreeMap<String, String>,
    pod_ip: Option<String>,
    host_ip: Option<String>,
    restart_policy: String,
    service_account: String,
    containers: Vec<ContainerDef>,
    init_containers: Vec<ContainerDef>,
    /// (is_init, index) of the container `command`/`args`/... apply to.
    last: Option<(bool, usize)>,
}

impl PodBuilder {
    pub fn new(namespace: &str, name: &str) -> PodBuilder {
        PodBuilder {
            namespace: namespace.to_string(),
            name: name.to_string(),
            uid: None,
            node: None,
            phase: Some("Running".to_string()),
            labels: BTreeMap::new(),
            pod_ip: None,
            host_ip: None,
            restart_policy: "Always".to_string(),
            service_account: "default".to_string(),
            containers: Vec::new(),
            init_containers: Vec::new(),
            last: None,
        }
    }

    /// `spec.nodeName`.
    pub fn node(mut self, node: &str) -> Self {
        self.node = Some(node.to_string());
        self
    }

    /// `status.phase` (Pending, Running, Succeeded, Failed, Unknown).
    pub fn phase(mut self, phase: &str) -> Self {
        self.phase = Some(phase.to_string());
        self
    }

    /// No `status.phase` at all.
    pub fn no_phase(mut self) -> Self {
        self.phase = None;
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    /// `status.podIP` and `status.podIPs`.
    pub fn pod_ip(mut self, ip: &str) -> Self {
        self.pod_ip = Some(ip.to_string());
        self
    }

    /// `status.hostIP`.
    pub fn host_ip(mut self, ip: &str) -> Self {
        self.host_ip = Some(ip.to_string());
        self
    }

    pub fn uid(mut self, uid: &str) -> Self {
        self.uid = Some(uid.to_string());
        self
    }

    /// `spec.restartPolicy` (Always, OnFailure, Never).
    pub fn restart_policy(mut self, policy: &str) -> Self {
        self.restart_policy = policy.to_string();
        self
    }

    pub fn service_account(mut self, name: &str) -> Self {
        self.service_account = name.to_string();
        self
    }

    /// Adds a container to `spec.containers` and its status to `status.containerStatuses`.
    /// `image_id` / `container_id` may be "" (e.g. a waiting container has no containerID).
    pub fn container(
        mut self,
        name: &str,
        image: &str,
        image_id: &str,
        container_id: &str,
        state: ContainerState,
    ) -> Self {
        self.containers
            .push(container_def(name, image, image_id, container_id, state));
        self.last = Some((false, self.containers.len() - 1));
        self
    }

    /// Adds an init container (`spec.initContainers` + `status.initContainerStatuses`).
    pub fn init_container(
        mut self,
        name: &str,
        image: &str,
        image_id: &str,
        container_id: &str,
        state: ContainerState,
    ) -> Self {
        self.init_containers
            .push(container_def(name, image, image_id, container_id, state));
        self.last = Some((true, self.init_containers.len() - 1));
        self
    }

    /// `command` of the container added last.
    pub fn command<I, S>(mut self, command: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.last_container("command").command = command.into_iter().map(Into::into).collect();
        self
    }

    /// `args` of the container added last.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.last_container("args").args = args.into_iter().map(Into::into).collect();
        self
    }

    /// The container added last gets no status entry (so spec and status counts differ, as for
    /// a pod whose kubelet has not reported yet).
    pub fn without_status(mut self) -> Self {
        self.last_container("without_status").with_status = false;
        self
    }

    /// `restartCount` of the container added last.
    pub fn restart_count(mut self, n: i32) -> Self {
        self.last_container("restart_count").restart_count = n;
        self
    }

    fn last_container(&mut self, what: &str) -> &mut ContainerDef {
        let found = match self.last {
            Some((true, i)) => self.init_containers.get_mut(i),
            Some((false, i)) => self.containers.get_mut(i),
            None => None,
        };
        match found {
            Some(c) => c,
            None => panic!("PodBuilder::{what} called before any container was added"),
        }
    }

    /// The pod as the JSON the API server would return.
    pub fn to_json(&self) -> Value {
        let mut metadata = json!({
            "name": self.name,
            "namespace": self.namespace,
            "uid": self.uid.clone().unwrap_or_else(|| crate::apiserver::uid_for_object("pod", &self.namespace, &self.name)),
            "creationTimestamp": CREATED,
        });
        if !self.labels.is_empty() {
            metadata["labels"] = json!(self.labels);
        }

        let mut spec = json!({
            "containers": self.containers.iter().map(spec_json).collect::<Vec<_>>(),
            "restartPolicy": self.restart_policy,
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": self.service_account,
            "serviceAccount": self.service_account,
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
        });
        if !self.init_containers.is_empty() {
            spec["initContainers"] = self.init_containers.iter().map(spec_json).collect();
        }
        if let Some(node) = &self.node {
            spec["nodeName"] = json!(node);
        }

        let mut status = json!({ "qosClass": "BestEffort" });
        if let Some(phase) = &self.phase {
            status["phase"] = json!(phase);
        }
        if let Some(ip) = &self.host_ip {
            status["hostIP"] = json!(ip);
            status["hostIPs"] = json!([{ "ip": ip }]);
        }
        if let Some(ip) = &self.pod_ip {
            status["podIP"] = json!(ip);
            status["podIPs"] = json!([{ "ip": ip }]);
        }
        if self.node.is_some() {
            status["startTime"] = json!(CREATED);
        }
        let statuses: Vec<Value> = self
            .containers
            .iter()
            .filter(|c| c.with_status)
            .map(status_json)
            .collect();
        if !statuses.is_empty() {
            status["containerStatuses"] = json!(statuses);
        }
        let init_statuses: Vec<Value> = self
            .init_containers
            .iter()
            .filter(|c| c.with_status)
            .map(status_json)
            .collect();
        if !init_statuses.is_empty() {
            status["initContainerStatuses"] = json!(init_statuses);
        }

        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": spec,
            "status": status,
        })
    }

    pub fn build(&self) -> Pod {
        serde_json::from_value(self.to_json())
            .unwrap_or_else(|e| panic!("PodBuilder produced JSON that is not a Pod: {e}"))
    }
}

fn container_def(
    name: &str,
    image: &str,
    image_id: &str,
    container_id: &str,
    state: ContainerState,
) -> ContainerDef {
    ContainerDef {
        name: name.to_string(),
        image: image.to_string(),
        image_id: image_id.to_string(),
        container_id: container_id.to_string(),
        state,
        command: Vec::new(),
        args: Vec::new(),
        with_status: true,
        restart_count: 0,
    }
}

fn spec_json(c: &ContainerDef) -> Value {
    let mut v = json!({
        "name": c.name,
        "image": c.image,
        "resources": {},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    });
    if !c.command.is_empty() {
        v["command"] = json!(c.command);
    }
    if !c.args.is_empty() {
        v["args"] = json!(c.args);
    }
    v
}

fn status_json(c: &ContainerDef) -> Value {
    let running = c.state == ContainerState::Running;
    let state = match c.state {
        ContainerState::Running => json!({ "running": { "startedAt": STARTED } }),
        ContainerState::Waiting => {
            // A waiting container with an ID has run before (crash loop); without one it is new.
            let reason = if c.container_id.is_empty() {
                "ContainerCreating"
            } else {
                "CrashLoopBackOff"
            };
            json!({ "waiting": { "reason": reason } })
        }
        ContainerState::Terminated => {
            let mut t = json!({
                "exitCode": 0,
                "reason": "Completed",
                "startedAt": STARTED,
                "finishedAt": FINISHED,
            });
            if !c.container_id.is_empty() {
                t["containerID"] = json!(c.container_id);
            }
            json!({ "terminated": t })
        }
    };
    let mut v = json!({
        "name": c.name,
        "image": c.image,
        "imageID": c.image_id,
        "ready": running,
        "started": running,
        "restartCount": c.restart_count,
        "state": state,
        "lastState": {},
    });
    if !c.container_id.is_empty() {
        v["containerID"] = json!(c.container_id);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_spec_and_status_like_the_api_server() {
        let pod = PodBuilder::new("ns1", "p1")
            .node("n1")
            .phase("Running")
            .label("app", "x")
            .pod_ip("10.0.0.1")
            .restart_policy("Never")
            .init_container(
                "init",
                "img:1",
                "img@sha256:aa",
                "cri-o://i1",
                State::Terminated,
            )
            .command(["sh", "-c", "true"])
            .container(
                "main",
                "img:2",
                "img@sha256:bb",
                "cri-o://c1",
                State::Running,
            )
            .args(["--port=8080"])
            .container("side", "img:3", "", "", State::Waiting)
            .without_status()
            .build();
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.containers.len(), 2);
        assert_eq!(spec.containers[0].args.as_ref().unwrap(), &["--port=8080"]);
        let init = &spec.init_containers.as_ref().unwrap()[0];
        assert_eq!(init.command.as_ref().unwrap(), &["sh", "-c", "true"]);
        let status = pod.status.as_ref().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.pod_ip.as_deref(), Some("10.0.0.1"));
        let cs = status.container_statuses.as_ref().unwrap();
        assert_eq!(cs.len(), 1, "the status-less container has no entry");
        assert_eq!(cs[0].image_id, "img@sha256:bb");
        assert_eq!(cs[0].container_id.as_deref(), Some("cri-o://c1"));
        let is = &status.init_container_statuses.as_ref().unwrap()[0];
        assert!(is.state.as_ref().unwrap().terminated.is_some());
        assert_eq!(
            pod.metadata
                .labels
                .as_ref()
                .unwrap()
                .get("app")
                .map(String::as_str),
            Some("x")
        );
    }

    #[test]
    #[should_panic(expected = "before any container")]
    fn command_without_container_is_a_test_bug() {
        let _ = PodBuilder::new("a", "b").command(["x"]);
    }
}
