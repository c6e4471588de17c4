//! A faithful in-process stand-in for the parts of the Kubernetes (and OpenShift) API server that
//! runtime-insights talks to, served over real HTTPS so tests go through the real `kube` client.
//!
//! What it serves:
//! - `GET /version`, `/healthz`, `/livez`, `/readyz` (public, like `system:public-info-viewer`);
//! - discovery: `GET /api`, `/api/v1`, `/apis`, `/apis/<group>`, `/apis/<group>/v1`;
//! - pods: `GET /api/v1/pods`, `/api/v1/namespaces/{ns}/pods` (etcd key order, `limit`/`continue`
//!   paging, `labelSelector`, `fieldSelector`), `/api/v1/namespaces/{ns}/pods/{name}`;
//! - `POST /apis/authentication.k8s.io/v1/tokenreviews`, `.../v1/selfsubjectreviews` (who am I),
//!   `/apis/authorization.k8s.io/v1/subjectaccessreviews`;
//! - OpenShift `image.openshift.io/v1` images (get and list) when [`ApiServer::set_images`] gave some.
//!
//! Authentication is real: bearer tokens from [`ApiServer::add_user`], or a client certificate
//! issued by [`ApiServer::ca`] (CN = user, O = group). Anything else gets 401. Authorization is
//! deliberately absent for resources: every authenticated user may read everything. The only
//! authorization logic is the SubjectAccessReview answer, computed from the rules given to
//! [`ApiServer::allow_non_resource`] / [`ApiServer::allow_resource`].
//!
//! Differences from a real API server worth knowing:
//! - no watch, no writes other than the two review endpoints, no RBAC on resources;
//! - a list does not read a consistent snapshot: later pages see changes made after the first one;
//! - a client certificate from another CA fails the TLS handshake instead of giving 401;
//! - continue tokens "expire" only through [`ApiServer::expire_continue_tokens`] (the stand-in for
//!   etcd compaction).

mod auth;
mod images;
mod paging;
mod pods;
mod selectors;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum_server::tls::TlsInfo;
use axum_server::tls_rustls::RustlsConfig;
use base64::Engine as _;
use http::{header, Method, StatusCode};
use k8s_openapi::api::core::v1::Pod;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;
use serde_json::{json, Value};

use crate::certs::{pem_to_der, TestCa};

pub use auth::Identity;
pub use images::openshift_image;

/// Largest request body accepted (review objects are tiny).
const MAX_BODY: usize = 1 << 20;

/// One request as the server saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Raw query string, "" when absent.
    pub query: String,
    /// Authenticated user name; `None` for anonymous/failed authentication.
    pub user: Option<String>,
    pub status: u16,
}

impl RecordedRequest {
    /// Value of one query parameter (percent-decoded), if present.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let uri: http::Uri = format!("/?{}", self.query).parse().ok()?;
        let q = axum::extract::Query::<HashMap<String, String>>::try_from_uri(&uri).ok()?;
        q.0.get(name).cloned()
    }
}

/// A running fake API server. Dropping it stops the server.
pub struct ApiServer {
    shared: Arc<Shared>,
    url: String,
    ca: TestCa,
    handle: axum_server::Handle<SocketAddr>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    data: Mutex<Data>,
    server_address: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Data> {
        // A panicking test thread must not make every later request fail too.
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
pub(crate) struct Data {
    pub(crate) users: HashMap<String, Identity>,
    pub(crate) non_resource_rules: Vec<auth::NonResourceRule>,
    pub(crate) resource_rules: Vec<auth::ResourceRule>,
    /// Keyed by "namespace/name": the etcd key below `/registry/pods/`, so BTreeMap order is etcd
    /// order.
    pub(crate) pods: BTreeMap<String, Pod>,
    /// Keyed by image name (cluster-scoped). `None`: the API group is not served.
    pub(crate) images: Option<BTreeMap<String, Value>>,
    /// The current resource version (etcd revision); bumped by every change.
    pub(crate) rv: u64,
    /// Continue tokens at or below this revision are "compacted away" → 410.
    pub(crate) compacted_rv: u64,
    pub(crate) requests: Vec<RecordedRequest>,
    pub(crate) list_delay: Duration,
}

impl ApiServer {
    /// Starts the server on `127.0.0.1:<ephemeral>` with a serving certificate (for 127.0.0.1,
    /// ::1 and localhost) from its own [`TestCa`]. Also installs the ring crypto provider.
    ///
    /// The server runs on its own thread and tokio runtime, so it keeps answering while the test
    /// blocks (e.g. waiting synchronously for a CLI subprocess that talks to it).
    /// Panics if the port cannot be bound or TLS cannot be configured (test fixture).
    pub async fn start() -> ApiServer {
        ApiServer::start_blocking()
    }

    /// [`ApiServer::start`] for synchronous tests (no runtime needed).
    pub fn start_blocking() -> ApiServer {
        crate::certs::install_crypto_provider();
        let ca = TestCa::new("testkit-apiserver-ca");
        let serving = ca.issue_server(
            &["localhost", "kubernetes.default.svc"],
            &[
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ],
        );
        let tls = tls_config(&ca, &serving.cert_pem, &serving.key_pem);

        // Bound here, so connections made before the server thread runs wait in the backlog.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("testkit apiserver: binding 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("testkit apiserver: local_addr: {e}"));
        let shared = Arc::new(Shared {
            data: Mutex::new(Data {
                rv: 1000,
                ..Data::default()
            }),
            server_address: addr.to_string(),
        });
        let app = axum::Router::new()
            .fallback(dispatch)
            .with_state(shared.clone());
        let handle = axum_server::Handle::new();
        let thread_handle = handle.clone();
        std::thread::Builder::new()
            .name(format!("testkit-apiserver-{}", addr.port()))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("testkit apiserver: tokio runtime: {e}");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let server = match axum_server::from_tcp_rustls(
                        listener,
                        RustlsConfig::from_config(tls),
                    ) {
                        Ok(server) => server.handle(thread_handle),
                        Err(e) => {
                            tracing::error!("testkit apiserver: listener: {e}");
                            return;
                        }
                    };
                    if let Err(e) = server.serve(app.into_make_service()).await {
                        tracing::error!("testkit apiserver stopped: {e}");
                    }
                });
                // Dropping the runtime here ends open connections too.
            })
            .unwrap_or_else(|e| panic!("testkit apiserver: spawning its thread: {e}"));
        ApiServer {
            shared,
            url: format!("https://{addr}"),
            ca,
            handle,
        }
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The CA that signed the serving certificate (and accepted client certificates), PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.cert_pem()
    }

    /// The server's CA, e.g. to issue client certificates it will accept.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// A `kube::Config` for this server using bearer `token`, trusting only the server's CA.
    pub fn kube_config(&self, token: &str) -> kube::Config {
        let mut config = kube::Config::new(
            self.url
                .parse()
                .unwrap_or_else(|e| panic!("testkit apiserver: url {}: {e}", self.url)),
        );
        config.root_cert = Some(vec![self.ca.cert_der().to_vec()]);
        config.auth_info.token = Some(token.to_string().into());
        config.default_namespace = "default".to_string();
        config
    }

    /// A ready `kube::Client` authenticating with bearer `token`.
    pub async fn client(&self, token: &str) -> kube::Client {
        kube::Client::try_from(self.kube_config(token))
            .unwrap_or_else(|e| panic!("testkit apiserver: building kube client: {e}"))
    }

    /// Writes a kubeconfig (JSON, which is valid YAML) with the server URL, the CA as
    /// `certificate-authority-data` and a bearer `token`.
    pub fn write_kubeconfig(&self, path: &Path, token: &str) {
        self.write_kubeconfig_user(path, json!({ "token": token }));
    }

    /// Writes a kubeconfig whose user authenticates with a client certificate issued by the
    /// server's CA with CN=`user`.
    pub fn write_kubeconfig_client_cert(&self, path: &Path, user: &str) {
        let ck = self.ca.issue_client(user);
        let b64 = base64::engine::general_purpose::STANDARD;
        self.write_kubeconfig_user(
            path,
            json!({
                "client-certificate-data": b64.encode(&ck.cert_pem),
                "client-key-data": b64.encode(&ck.key_pem),
            }),
        );
    }

    fn write_kubeconfig_user(&self, path: &Path, user: Value) {
        let b64 = base64::engine::general_purpose::STANDARD;
        let doc = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{
                "name": "testkit",
                "cluster": {
                    "server": self.url,
                    "certificate-authority-data": b64.encode(self.ca_pem()),
                },
            }],
            "users": [{ "name": "testkit-user", "user": user }],
            "contexts": [{
                "name": "testkit",
                "context": { "cluster": "testkit", "user": "testkit-user", "namespace": "default" },
            }],
            "current-context": "testkit",
            "preferences": {},
        });
        let text = serde_json::to_string_pretty(&doc)
            .unwrap_or_else(|e| panic!("testkit: serialising kubeconfig: {e}"));
        std::fs::write(path, text)
            .unwrap_or_else(|e| panic!("testkit: writing {}: {e}", path.display()));
    }

    /// Registers a bearer token. The user gets `groups` plus `system:authenticated` (as the real
    /// authenticator adds it); TokenReview answers from this table.
    pub fn add_user(&self, token: &str, username: &str, groups: &[&str]) {
        let identity = Identity::new(username, groups.iter().map(|g| g.to_string()).collect());
        self.shared.lock().users.insert(token.to_string(), identity);
    }

    /// Forgets a bearer token (revocation).
    pub fn remove_user(&self, token: &str) {
        self.shared.lock().users.remove(token);
    }

    /// SubjectAccessReview rule for non-resource URLs, like an RBAC `nonResourceURLs` rule:
    /// `subject` is a user or group name; `path` is exact or ends with `*` (prefix); `verbs` are
    /// lower-case HTTP-derived verbs (`get`, `create`, ...) or `*`.
    pub fn allow_non_resource(&self, subject: &str, path: &str, verbs: &[&str]) {
        self.shared
            .lock()
            .non_resource_rules
            .push(auth::NonResourceRule {
                subject: subject.to_string(),
                path: path.to_string(),
                verbs: verbs.iter().map(|v| v.to_string()).collect(),
            });
    }

    /// SubjectAccessReview rule for resources: `group` ("" = core), `resource` and `verbs` may be
    /// `*`. Applies to every namespace.
    pub fn allow_resource(&self, subject: &str, group: &str, resource: &str, verbs: &[&str]) {
        self.shared.lock().resource_rules.push(auth::ResourceRule {
            subject: subject.to_string(),
            group: group.to_string(),
            resource: resource.to_string(),
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
        });
    }

    /// Replaces all pods.
    pub fn set_pods(&self, pods: Vec<Pod>) {
        let mut data = self.shared.lock();
        data.pods.clear();
        insert_pods(&mut data, pods);
    }

    /// Adds (or replaces, by namespace/name) pods.
    pub fn add_pods(&self, pods: Vec<Pod>) {
        insert_pods(&mut self.shared.lock(), pods);
    }

    /// Removes one pod; true if it existed.
    pub fn delete_pod(&self, namespace: &str, name: &str) -> bool {
        let mut data = self.shared.lock();
        data.rv += 1;
        data.pods.remove(&format!("{namespace}/{name}")).is_some()
    }

    /// Number of pods held.
    pub fn pod_count(&self) -> usize {
        self.shared.lock().pods.len()
    }

    /// OpenShift `image.openshift.io/v1` Image objects (keyed by `metadata.name`). `None`: the API
    /// group is absent (404 and not in `/apis`), as on plain Kubernetes.
    pub fn set_images(&self, images: Option<Vec<Value>>) {
        let mut data = self.shared.lock();
        data.rv += 1;
        let rv = data.rv;
        data.images = images.map(|list| images::index(list, rv));
    }

    /// Makes every continue token issued so far answer 410 Gone (reason `Expired`), like etcd
    /// compaction of the revision the list started at.
    pub fn expire_continue_tokens(&self) {
        let mut data = self.shared.lock();
        data.compacted_rv = data.rv;
        data.rv += 1;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// Delay before every list (pods, images) answer, to test progress and timeouts.
    pub fn set_list_delay(&self, d: Duration) {
        self.shared.lock().list_delay = d;
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

fn insert_pods(data: &mut Data, pods: Vec<Pod>) {
    data.rv += 1;
    let rv = data.rv;
    for mut pod in pods {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        // Stored objects always carry these on a real server.
        if pod.metadata.resource_version.is_none() {
            pod.metadata.resource_version = Some(rv.to_string());
        }
        if pod.metadata.uid.is_none() {
            pod.metadata.uid = Some(uid_for_object("pod", &ns, &name));
        }
        data.pods.insert(format!("{ns}/{name}"), pod);
    }
}

/// The uid a stored object gets when it has none (stable per kind/namespace/name).
pub(crate) fn uid_for_object(kind: &str, namespace: &str, name: &str) -> String {
    auth::uid_for(&format!("{kind}/{namespace}/{name}"))
}

fn tls_config(ca: &TestCa, cert_pem: &str, key_pem: &str) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.cert_der())
        .unwrap_or_else(|e| panic!("testkit apiserver: CA root: {e}"));
    // Like kube-apiserver: ask for a client certificate but let token users in without one.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .unwrap_or_else(|e| panic!("testkit apiserver: client verifier: {e}"));
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .unwrap_or_else(|e| panic!("testkit apiserver: server key: {e}"));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| panic!("testkit apiserver: protocol versions: {e}"))
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pem_to_der(cert_pem)], key)
        .unwrap_or_else(|e| panic!("testkit apiserver: server cert: {e}"));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// An API error rendered as a `metav1.Status` body.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    pub(crate) details: Option<Value>,
}

impl ApiError {
    pub(crate) fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// The generic "no such path" answer of kube-apiserver.
    pub(crate) fn no_route() -> ApiError {
        ApiError {
            details: Some(json!({})),
            ..ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        }
    }

    pub(crate) fn not_found(group: &str, resource: &str, name: &str) -> ApiError {
        let qualified = if group.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}.{group}")
        };
        let mut details = json!({ "name": name, "kind": resource });
        if !group.is_empty() {
            details["group"] = json!(group);
        }
        ApiError {
            details: Some(details),
            ..ApiError::new(404, "NotFound", format!("{qualified} \"{name}\" not found"))
        }
    }

    fn method_not_allowed() -> ApiError {
        ApiError {
            details: Some(json!({})),
            ..ApiError::new(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        }
    }

    pub(crate) fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    fn into_response(self) -> Response {
        let mut body = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = self.details {
            body["details"] = details;
        }
        json_response(self.code, &body)
    }
}

pub(crate) fn json_response(code: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// Everything a handler needs about the request.
pub(crate) struct Ctx<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) method: &'a Method,
    pub(crate) query: HashMap<String, String>,
    pub(crate) identity: Option<Identity>,
    pub(crate) body: axum::body::Bytes,
}

async fn dispatch(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().unwrap_or("").to_string();

    let identity = {
        let tls = parts.extensions.get::<Arc<TlsInfo>>();
        let data = shared.lock();
        auth::authenticate(&data, &parts.headers, tls.map(|t| t.as_ref()))
    };

    let result = match axum::body::to_bytes(body, MAX_BODY).await {
        Err(_) => Err(ApiError::new(
            413,
            "RequestEntityTooLarge",
            "the request body is too large",
        )),
        Ok(body) => match axum::extract::Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
        {
            Err(e) => Err(ApiError::bad_request(format!("invalid query: {e}"))),
            Ok(query) => {
                let ctx = Ctx {
                    shared: &shared,
                    method: &method,
                    query: query.0,
                    identity: identity.clone(),
                    body,
                };
                route(&ctx, &path).await
            }
        },
    };
    let response = result.unwrap_or_else(ApiError::into_response);
    shared.lock().requests.push(RecordedRequest {
        method: method.to_string(),
        path,
        query: raw_query,
        user: identity.map(|i| i.username),
        status: response.status().as_u16(),
    });
    response
}

async fn route(ctx: &Ctx<'_>, path: &str) -> Result<Response, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    // Public endpoints (system:public-info-viewer).
    match segs.as_slice() {
        ["version"] => return get_only(ctx).map(|()| json_response(200, &version())),
        ["healthz"] | ["livez"] | ["readyz"] => {
            get_only(ctx)?;
            return Ok((StatusCode::OK, "ok").into_response());
        }
        _ => {}
    }
    if ctx.identity.is_none() {
        return Err(ApiError::unauthorized());
    }
    let images_served = ctx.shared.lock().images.is_some();
    match segs.as_slice() {
        ["api"] => get_only(ctx).map(|()| json_response(200, &api_versions(ctx.shared))),
        ["api", "v1"] => get_only(ctx).map(|()| json_response(200, &core_resources())),
        ["apis"] => get_only(ctx).map(|()| json_response(200, &api_groups(images_served))),
        ["apis", group] => {
            get_only(ctx)?;
            group_info(group, images_served)
                .map(|(g, _)| json_response(200, &g))
                .ok_or_else(ApiError::no_route)
        }
        ["apis", group, "v1"] => {
            get_only(ctx)?;
            group_info(group, images_served)
                .map(|(_, r)| json_response(200, &r))
                .ok_or_else(ApiError::no_route)
        }
        ["api", "v1", "pods"] => {
            get_only(ctx)?;
            pods::list(ctx, None).await
        }
        ["api", "v1", "namespaces", ns, "pods"] => {
            get_only(ctx)?;
            pods::list(ctx, Some(ns)).await
        }
        ["api", "v1", "namespaces", ns, "pods", name] => {
            get_only(ctx)?;
            pods::get(ctx, ns, name)
        }
        ["apis", "authentication.k8s.io", "v1", "tokenreviews"] => {
            post_only(ctx)?;
            auth::token_review(ctx)
        }
        ["apis", "authentication.k8s.io", "v1", "selfsubjectreviews"] => {
            post_only(ctx)?;
            auth::self_subject_review(ctx)
        }
        ["apis", "authorization.k8s.io", "v1", "subjectaccessreviews"] => {
            post_only(ctx)?;
            auth::subject_access_review(ctx)
        }
        ["apis", "image.openshift.io", "v1", "images"] if images_served => {
            get_only(ctx)?;
            images::list(ctx).await
        }
        ["apis", "image.openshift.io", "v1", "images", name] if images_served => {
            get_only(ctx)?;
            images::get(ctx, name)
        }
        _ => Err(ApiError::no_route()),
    }
}

fn get_only(ctx: &Ctx<'_>) -> Result<(), ApiError> {
    if *ctx.method == Method::GET || *ctx.method == Method::HEAD {
        Ok(())
    } else {
        Err(ApiError::method_not_allowed())
    }
}

fn post_only(ctx: &Ctx<'_>) -> Result<(), ApiError> {
    if *ctx.method == Method::POST {
        Ok(())
    } else {
        Err(ApiError::method_not_allowed())
    }
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": "v1.33.5",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-10-01T00:00:00Z",
        "goVersion": "go1.24.6",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn api_versions(shared: &Shared) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            { "clientCIDR": "0.0.0.0/0", "serverAddress": shared.server_address },
        ],
    })
}

fn core_resources() -> Value {
    json!({
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {
                "name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
                "verbs": ["get", "list"], "shortNames": ["po"], "categories": ["all"],
            },
        ],
    })
}

/// (group, version-resources) for the groups served beyond the core one.
fn group_info(group: &str, images_served: bool) -> Option<(Value, Value)> {
    let resources: Value = match group {
        "authentication.k8s.io" => json!([
            { "name": "tokenreviews", "singularName": "tokenreview", "namespaced": false,
              "kind": "TokenReview", "verbs": ["create"] },
            { "name": "selfsubjectreviews", "singularName": "selfsubjectreview", "namespaced": false,
              "kind": "SelfSubjectReview", "verbs": ["create"] },
        ]),
        "authorization.k8s.io" => json!([
            { "name": "subjectaccessreviews", "singularName": "subjectaccessreview",
              "namespaced": false, "kind": "SubjectAccessReview", "verbs": ["create"] },
        ]),
        "image.openshift.io" if images_served => json!([
            { "name": "images", "singularName": "image", "namespaced": false, "kind": "Image",
              "verbs": ["get", "list"] },
        ]),
        _ => return None,
    };
    let gv = format!("{group}/v1");
    let group_obj = json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": [{ "groupVersion": gv, "version": "v1" }],
        "preferredVersion": { "groupVersion": gv, "version": "v1" },
    });
    let list = json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    });
    Some((group_obj, list))
}

fn api_groups(images_served: bool) -> Value {
    let mut groups = Vec::new();
    for g in [
        "authentication.k8s.io",
        "authorization.k8s.io",
        "image.openshift.io",
    ] {
        if let Some((group, _)) = group_info(g, images_served) {
            let mut group = group;
            if let Some(obj) = group.as_object_mut() {
                // Entries of an APIGroupList carry no kind/apiVersion.
                obj.remove("kind");
                obj.remove("apiVersion");
            }
            groups.push(group);
        }
    }
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// Turns a typed object into list-item JSON: list items carry no kind/apiVersion on the wire.
pub(crate) fn list_item(mut v: Value) -> Value {
    if let Some(obj) = v.as_object_mut() {
        obj.remove("kind");
        obj.remove("apiVersion");
    }
    v
}
