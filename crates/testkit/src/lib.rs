//! Test-only helpers for runtime-insights: a faithful Kubernetes API server stand-in over real
//! HTTPS ([`apiserver`]), a test CA ([`certs`]) and a pod builder ([`pods`]).
//!
//! A test against the fake API server through the real `kube` client:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use k8s_openapi::api::core::v1::Pod;
//! use kube::api::{Api, ListParams};
//! use testkit::{ApiServer, ContainerState, PodBuilder};
//!
//! testkit::install_crypto_provider();
//! let server = ApiServer::start().await;
//! server.add_user("t0ken", "system:serviceaccount:openshift-insights:operator", &[]);
//! server.set_pods(vec![PodBuilder::new("ns1", "web-0")
//!     .node("worker-1")
//!     .container("web", "quay.io/x/web:1", "quay.io/x/web@sha256:00", "cri-o://c1", ContainerState::Running)
//!     .build()]);
//!
//! let pods: Api<Pod> = Api::all(server.client("t0ken").await);
//! let list = pods.list(&ListParams::default().limit(500)).await.unwrap();
//! assert_eq!(list.items.len(), 1);
//! assert_eq!(server.requests()[0].user.as_deref(), Some("system:serviceaccount:openshift-insights:operator"));
//! # }
//! ```

pub mod apiserver;
pub mod bench;
pub mod bins;
pub mod certs;
pub mod cri_sandbox;
pub mod daemons;
pub mod pods;
pub mod rootfs;
pub mod serve;
pub mod workloads;

pub use apiserver::{ApiServer, RecordedRequest};
pub use certs::{install_crypto_provider, CertKey, TestCa};
pub use pods::{ContainerState, PodBuilder};
