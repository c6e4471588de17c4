//! The fake API server, exercised through the real `kube` client over HTTPS.

use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{SelfSubjectReview, TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde_json::json;
use testkit::{ApiServer, ContainerState, PodBuilder};

const TOKEN: &str = "operator-token";
const OPERATOR: &str = "system:serviceaccount:openshift-insights:operator";

async fn server() -> ApiServer {
    testkit::install_crypto_provider();
    let server = ApiServer::start().await;
    server.add_user(
        TOKEN,
        OPERATOR,
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:openshift-insights",
        ],
    );
    server
}

fn pod(ns: &str, name: &str) -> Pod {
    PodBuilder::new(ns, name)
        .node("worker-1")
        .container(
            "c",
            "quay.io/x/y:1",
            "quay.io/x/y@sha256:1111111111111111111111111111111111111111111111111111111111111111",
            &format!("cri-o://{name}"),
            ContainerState::Running,
        )
        .build()
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .map(|p| {
            format!(
                "{}/{}",
                p.metadata.namespace.as_deref().unwrap_or(""),
                p.metadata.name.as_deref().unwrap_or("")
            )
        })
        .collect()
}

fn api_error(err: kube::Error) -> Box<kube::core::Status> {
    match err {
        kube::Error::Api(status) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn pages_1234_pods_in_etcd_order_with_limit_500() {
    let server = server().await;
    // Inserted out of order on purpose; names not zero-padded so string order != numeric order.
    let mut all = Vec::new();
    for i in (0..1234).rev() {
        all.push(pod(&format!("ns-{}", i % 7), &format!("pod-{i}")));
    }
    server.set_pods(all);
    let mut expected: Vec<String> = (0..1234).map(|i| format!("ns-{}/pod-{i}", i % 7)).collect();
    expected.sort();

    let api: Api<Pod> = Api::all(server.client(TOKEN).await);
    let mut seen = Vec::new();
    let mut page_sizes = Vec::new();
    let mut remaining = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(500);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let list = api.list(&lp).await.unwrap();
        assert!(list.metadata.resource_version.is_some());
        page_sizes.push(list.items.len());
        remaining.push(list.metadata.remaining_item_count);
        seen.extend(names(&list.items));
        token = list.metadata.continue_.filter(|c| !c.is_empty());
        if token.is_none() {
            break;
        }
    }
    assert_eq!(page_sizes, [500, 500, 234]);
    assert_eq!(remaining, [Some(734), Some(234), None]);
    assert_eq!(seen, expected, "etcd (key) order, no gaps or repeats");

    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    for (i, r) in reqs.iter().enumerate() {
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("GET", "/api/v1/pods")
        );
        assert_eq!(r.query_param("limit").as_deref(), Some("500"));
        assert_eq!(r.query_param("continue").is_some(), i > 0, "{r:?}");
        assert_eq!(r.user.as_deref(), Some(OPERATOR));
        assert_eq!(r.status, 200);
    }
}

#[tokio::test]
async fn expired_continue_token_is_410_and_malformed_is_400() {
    let server = server().await;
    server.set_pods((0..5).map(|i| pod("a", &format!("p{i}"))).collect());
    let api: Api<Pod> = Api::all(server.client(TOKEN).await);
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    let token = first.metadata.continue_.clone().unwrap();
    // Still valid before expiry.
    let second = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(&second.items), ["a/p2", "a/p3"]);

    server.expire_continue_tokens();
    let err = api_error(
        api.list(&ListParams::default().limit(2).continue_token(&token))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 410);
    assert_eq!(err.reason, "Expired");
    assert!(
        err.message.contains("continue parameter is too old"),
        "{err:?}"
    );

    // A fresh list works again, and its tokens are valid.
    let again = api.list(&ListParams::default().limit(2)).await.unwrap();
    let t2 = again.metadata.continue_.unwrap();
    assert!(api
        .list(&ListParams::default().limit(2).continue_token(&t2))
        .await
        .is_ok());

    let err = api_error(
        api.list(&ListParams::default().limit(2).continue_token("not-a-token"))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (400, "BadRequest"));
    assert!(err.message.starts_with("invalid continue token"), "{err:?}");
}

#[tokio::test]
async fn label_and_field_selectors() {
    let server = server().await;
    server.set_pods(vec![
        PodBuilder::new("openshift-insights", "extractor-a")
            .label("app.kubernetes.io/name", "insights-runtime-extractor")
            .node("n1")
            .pod_ip("10.0.0.1")
            .build(),
        PodBuilder::new("openshift-insights", "extractor-b")
            .label("app.kubernetes.io/name", "insights-runtime-extractor")
            .node("n2")
            .phase("Pending")
            .build(),
        PodBuilder::new("openshift-insights", "operator")
            .label("app", "insights-operator")
            .node("n1")
            .build(),
        PodBuilder::new("other", "web")
            .label("app", "web")
            .label("tier", "front")
            .node("n2")
            .phase("Succeeded")
            .build(),
    ]);
    let api: Api<Pod> = Api::all(server.client(TOKEN).await);
    let by_labels = |s: &'static str| {
        let api = api.clone();
        async move {
            names(
                &api.list(&ListParams::default().labels(s))
                    .await
                    .unwrap()
                    .items,
            )
        }
    };
    let by_fields = |s: &'static str| {
        let api = api.clone();
        async move {
            names(
                &api.list(&ListParams::default().fields(s))
                    .await
                    .unwrap()
                    .items,
            )
        }
    };
    assert_eq!(
        by_labels("app.kubernetes.io/name=insights-runtime-extractor").await,
        [
            "openshift-insights/extractor-a",
            "openshift-insights/extractor-b"
        ]
    );
    assert_eq!(by_labels("app==web").await, ["other/web"]);
    assert_eq!(
        by_labels("app!=web").await,
        [
            "openshift-insights/extractor-a",
            "openshift-insights/extractor-b",
            "openshift-insights/operator"
        ]
    );
    assert_eq!(
        by_labels("app in (web, insights-operator)").await,
        ["openshift-insights/operator", "other/web"]
    );
    assert_eq!(
        by_labels("app notin (web),app").await,
        ["openshift-insights/operator"]
    );
    assert_eq!(by_labels("tier,app=web").await, ["other/web"]);
    assert_eq!(by_labels("!app,!tier").await.len(), 2);

    assert_eq!(
        by_fields("spec.nodeName=n1").await,
        [
            "openshift-insights/extractor-a",
            "openshift-insights/operator"
        ]
    );
    assert_eq!(
        by_fields("spec.nodeName==n2,status.phase!=Succeeded").await,
        ["openshift-insights/extractor-b"]
    );
    assert_eq!(by_fields("metadata.namespace=other").await, ["other/web"]);
    assert_eq!(
        by_fields("metadata.name=operator").await,
        ["openshift-insights/operator"]
    );
    assert_eq!(by_fields("status.phase=Running").await.len(), 2);

    // Selector + paging: no remainingItemCount with a selector, like the real server.
    let page = api
        .list(
            &ListParams::default()
                .labels("app.kubernetes.io/name")
                .limit(1),
        )
        .await
        .unwrap();
    assert_eq!(names(&page.items), ["openshift-insights/extractor-a"]);
    assert!(page.metadata.continue_.is_some());
    assert_eq!(page.metadata.remaining_item_count, None);

    let err = api_error(
        api.list(&ListParams::default().fields("spec.containers=x"))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);
    assert_eq!(err.message, "field label not supported: spec.containers");
    let err = api_error(
        api.list(&ListParams::default().labels("app in (a"))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);
}

#[tokio::test]
async fn namespaced_list_and_get() {
    let server = server().await;
    server.set_pods(vec![
        pod("a", "p1"),
        pod("a-b", "p2"),
        pod("a", "p3"),
        pod("b", "p4"),
    ]);
    server.add_pods(vec![pod("a", "p0")]);
    let client = server.client(TOKEN).await;
    let in_a: Api<Pod> = Api::namespaced(client.clone(), "a");
    assert_eq!(
        names(&in_a.list(&ListParams::default()).await.unwrap().items),
        ["a/p0", "a/p1", "a/p3"]
    );
    let page = in_a.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(page.metadata.remaining_item_count, Some(1));
    let rest = in_a
        .list(
            &ListParams::default()
                .limit(2)
                .continue_token(page.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(names(&rest.items), ["a/p3"]);
    assert_eq!(rest.metadata.continue_.as_deref().unwrap_or(""), "");

    // Cluster-wide: etcd key order puts "a-b/" before "a/".
    let all: Api<Pod> = Api::all(client.clone());
    assert_eq!(
        names(&all.list(&ListParams::default()).await.unwrap().items),
        ["a-b/p2", "a/p0", "a/p1", "a/p3", "b/p4"]
    );

    let got = in_a.get("p3").await.unwrap();
    assert_eq!(got.metadata.name.as_deref(), Some("p3"));
    assert!(got.metadata.uid.is_some() && got.metadata.resource_version.is_some());
    let err = api_error(in_a.get("missing").await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
    assert_eq!(err.message, "pods \"missing\" not found");
}

#[tokio::test]
async fn unauthenticated_requests_get_401() {
    let server = server().await;
    server.set_pods(vec![pod("a", "p")]);

    let bad: Api<Pod> = Api::all(server.client("wrong-token").await);
    let err = api_error(bad.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (401, "Unauthorized"));

    let mut config = server.kube_config("unused");
    config.auth_info.token = None;
    let anonymous: Api<Pod> = Api::all(Client::try_from(config).unwrap());
    let err = api_error(anonymous.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(err.code, 401);

    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs.iter().all(|r| r.status == 401 && r.user.is_none()));

    // Revocation.
    let good: Api<Pod> = Api::all(server.client(TOKEN).await);
    assert!(good.list(&ListParams::default()).await.is_ok());
    server.remove_user(TOKEN);
    assert_eq!(
        api_error(good.list(&ListParams::default()).await.unwrap_err()).code,
        401
    );
}

#[tokio::test]
async fn kubeconfig_files_with_token_and_client_certificate() {
    let server = server().await;
    server.set_pods(vec![pod("a", "p")]);
    let dir = tempfile::tempdir().unwrap();

    let token_path = dir.path().join("token.kubeconfig");
    server.write_kubeconfig(&token_path, TOKEN);
    let cert_path = dir.path().join("cert.kubeconfig");
    server.write_kubeconfig_client_cert(&cert_path, "alice");

    for path in [&token_path, &cert_path] {
        let config = kube::Config::from_custom_kubeconfig(
            Kubeconfig::read_from(path).unwrap(),
            &KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        let api: Api<Pod> = Api::all(Client::try_from(config).unwrap());
        assert_eq!(
            api.list(&ListParams::default()).await.unwrap().items.len(),
            1
        );
    }
    let users: Vec<_> = server.requests().into_iter().map(|r| r.user).collect();
    assert_eq!(
        users,
        [Some(OPERATOR.to_string()), Some("alice".to_string())]
    );
}

#[tokio::test]
async fn client_certificate_identity_has_cn_user_and_o_group() {
    let server = server().await;
    // Client certificate with O=<group> in a kube::Config built by hand; a bad bearer token is
    // also sent, and the certificate wins (x509 runs first in kube-apiserver's authenticator).
    let ck = server.ca().issue_client_in_group("bob", "system:masters");
    let mut config = server.kube_config("not-a-registered-token");
    config.auth_info.client_certificate_data = Some(base64_encode(&ck.cert_pem));
    config.auth_info.client_key_data = Some(base64_encode(&ck.key_pem).into());
    let client = Client::try_from(config).unwrap();
    let reviews: Api<SelfSubjectReview> = Api::all(client);
    let me = reviews
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .unwrap();
    let user = me.status.unwrap().user_info.unwrap();
    assert_eq!(user.username.as_deref(), Some("bob"));
    assert_eq!(
        user.groups.unwrap(),
        ["system:masters", "system:authenticated"]
    );
    assert_eq!(server.requests()[0].user.as_deref(), Some("bob"));

    // A token user's identity.
    let reviews: Api<SelfSubjectReview> = Api::all(server.client(TOKEN).await);
    let me = reviews
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .unwrap();
    assert_eq!(
        me.status.unwrap().user_info.unwrap().username.as_deref(),
        Some(OPERATOR)
    );
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn token_review(token: &str) -> TokenReview {
    TokenReview {
        spec: TokenReviewSpec {
            token: token.to_string(),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn non_resource_sar(user: &str, groups: &[&str], path: &str, verb: &str) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_string()),
            groups: Some(groups.iter().map(|g| g.to_string()).collect()),
            non_resource_attributes: Some(NonResourceAttributes {
                path: Some(path.to_string()),
                verb: Some(verb.to_string()),
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn token_review_round_trip() {
    let server = server().await;
    server.add_user(
        "extractor-token",
        "system:serviceaccount:openshift-insights:insights-runtime-extractor-sa",
        &[],
    );
    let reviews: Api<TokenReview> = Api::all(server.client("extractor-token").await);

    let ok = reviews
        .create(&PostParams::default(), &token_review(TOKEN))
        .await
        .unwrap();
    let status = ok.status.unwrap();
    assert_eq!(status.authenticated, Some(true));
    let user = status.user.unwrap();
    assert_eq!(user.username.as_deref(), Some(OPERATOR));
    assert!(user.uid.is_some_and(|u| !u.is_empty()));
    assert_eq!(
        user.groups.unwrap(),
        [
            "system:serviceaccounts",
            "system:serviceaccounts:openshift-insights",
            "system:authenticated"
        ]
    );

    let bad = reviews
        .create(&PostParams::default(), &token_review("nope"))
        .await
        .unwrap();
    let status = bad.status.unwrap();
    assert_ne!(status.authenticated, Some(true));
    assert!(status.user.is_none_or(|u| u.username.is_none()));

    let err = api_error(
        reviews
            .create(&PostParams::default(), &token_review(""))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);

    // The caller of the review endpoint must itself be authenticated.
    let anonymous: Api<TokenReview> = Api::all(server.client("not-registered").await);
    let err = api_error(
        anonymous
            .create(&PostParams::default(), &token_review(TOKEN))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 401);
}

#[tokio::test]
async fn subject_access_review_round_trip() {
    let server = server().await;
    server.allow_non_resource(OPERATOR, "/gather_runtime_info", &["create"]);
    server.allow_non_resource("cluster-admins", "*", &["*"]);
    server.allow_non_resource("metrics-readers", "/metrics*", &["get"]);
    server.allow_resource("pod-readers", "", "pods", &["get", "list"]);
    let sars: Api<SubjectAccessReview> = Api::all(server.client(TOKEN).await);
    let allowed = |sar: SubjectAccessReview| {
        let sars = sars.clone();
        async move {
            let answer = sars.create(&PostParams::default(), &sar).await.unwrap();
            let status = answer.status.unwrap();
            if status.allowed {
                assert!(status
                    .reason
                    .is_some_and(|r| r.starts_with("RBAC: allowed")));
            }
            status.allowed
        }
    };

    let auth = ["system:authenticated"];
    assert!(
        allowed(non_resource_sar(
            OPERATOR,
            &auth,
            "/gather_runtime_info",
            "create"
        ))
        .await
    );
    assert!(
        !allowed(non_resource_sar(
            OPERATOR,
            &auth,
            "/gather_runtime_info",
            "get"
        ))
        .await
    );
    assert!(
        !allowed(non_resource_sar(
            OPERATOR,
            &auth,
            "/gather_runtime_info/x",
            "create"
        ))
        .await
    );
    assert!(
        !allowed(non_resource_sar(
            "someone-else",
            &auth,
            "/gather_runtime_info",
            "create"
        ))
        .await
    );
    assert!(
        allowed(non_resource_sar(
            "admin",
            &["cluster-admins"],
            "/gather_runtime_info",
            "create"
        ))
        .await
    );
    assert!(
        allowed(non_resource_sar(
            "m",
            &["metrics-readers"],
            "/metrics/cadvisor",
            "get"
        ))
        .await
    );
    assert!(
        !allowed(non_resource_sar(
            "m",
            &["metrics-readers"],
            "/healthz",
            "get"
        ))
        .await
    );

    let resource_sar = |group: &str, verb: &str| SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some("r".into()),
            groups: Some(vec![group.to_string()]),
            resource_attributes: Some(ResourceAttributes {
                resource: Some("pods".into()),
                verb: Some(verb.into()),
                namespace: Some("x".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    assert!(allowed(resource_sar("pod-readers", "list")).await);
    assert!(!allowed(resource_sar("pod-readers", "delete")).await);
    assert!(!allowed(resource_sar("nobody", "list")).await);

    // Neither attribute set → 422 Invalid, like the real server.
    let invalid = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some("x".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let err = api_error(
        sars.create(&PostParams::default(), &invalid)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
}

fn image_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("image.openshift.io", "v1", "Image"))
}

fn image(name: &str) -> serde_json::Value {
    testkit::apiserver::openshift_image(
        name,
        &format!("quay.io/x/y@{name}"),
        &["sha256:aaaa", "sha256:bbbb"],
        &["/usr/bin/java"],
        &["-jar", "/app.jar"],
    )
}

#[tokio::test]
async fn openshift_images_present_and_absent() {
    let server = server().await;
    let client = server.client(TOKEN).await;
    let images: Api<DynamicObject> = Api::all_with(client.clone(), &image_resource());
    let name = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    // Absent group: 404 everywhere and not discoverable.
    let err = api_error(images.get(name).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
    assert_eq!(
        err.message,
        "the server could not find the requested resource"
    );
    let groups = client.list_api_groups().await.unwrap();
    assert!(!groups.groups.iter().any(|g| g.name == "image.openshift.io"));

    server.set_images(Some(vec![image(name), image("sha256:1111")]));
    let got = images.get(name).await.unwrap();
    assert_eq!(got.metadata.name.as_deref(), Some(name));
    assert_eq!(
        got.data["dockerImageLayers"][1]["name"],
        json!("sha256:bbbb")
    );
    assert_eq!(
        got.data["dockerImageMetadata"]["ContainerConfig"]["Entrypoint"],
        json!(["/usr/bin/java"])
    );
    assert!(got.metadata.resource_version.is_some());
    let err = api_error(images.get("sha256:9999").await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
    assert_eq!(
        err.message,
        "images.image.openshift.io \"sha256:9999\" not found"
    );
    let list = images.list(&ListParams::default()).await.unwrap();
    let listed: Vec<_> = list
        .items
        .iter()
        .filter_map(|i| i.metadata.name.clone())
        .collect();
    assert_eq!(listed, ["sha256:1111", name]);

    let groups = client.list_api_groups().await.unwrap();
    assert!(groups.groups.iter().any(|g| g.name == "image.openshift.io"));
    let resources = client
        .list_api_group_resources("image.openshift.io/v1")
        .await
        .unwrap();
    assert!(resources.resources.iter().any(|r| r.name == "images"));

    server.set_images(None);
    assert_eq!(api_error(images.get(name).await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn version_discovery_unknown_paths_and_list_delay() {
    let server = server().await;
    let client = server.client(TOKEN).await;
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
    let core = client.list_core_api_versions().await.unwrap();
    assert_eq!(core.versions, ["v1"]);
    let resources = client.list_core_api_resources("v1").await.unwrap();
    assert!(resources.resources.iter().any(|r| r.name == "pods"));

    let req = http::Request::get("/api/v1/namespaces/a/configmaps")
        .body(Vec::new())
        .unwrap();
    let err = api_error(client.request::<serde_json::Value>(req).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));

    let req = http::Request::delete("/api/v1/namespaces/a/pods/x")
        .body(Vec::new())
        .unwrap();
    let err = api_error(client.request::<serde_json::Value>(req).await.unwrap_err());
    assert_eq!(err.code, 405);

    server.set_pods(vec![pod("a", "p")]);
    server.set_list_delay(Duration::from_millis(300));
    let api: Api<Pod> = Api::all(client);
    let started = Instant::now();
    api.list(&ListParams::default()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));

    server.clear_requests();
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn dropping_the_server_stops_it() {
    let server = server().await;
    let client = server.client(TOKEN).await;
    let url = server.url();
    assert!(url.starts_with("https://127.0.0.1:"));
    drop(server);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let api: Api<Pod> = Api::all(client);
    let result = tokio::time::timeout(Duration::from_secs(10), api.list(&ListParams::default()))
        .await
        .expect("a stopped server must not hang the client");
    assert!(result.is_err());
}

#[tokio::test(flavor = "current_thread")]
async fn server_answers_while_the_test_runtime_is_blocked() {
    let server = server().await;
    server.set_pods(vec![pod("a", "p")]);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig, TOKEN);
    // Stands in for a CLI subprocess: another thread with its own runtime, joined synchronously,
    // which blocks this (single-threaded) test runtime until it is done.
    let count = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let config = kube::Config::from_custom_kubeconfig(
                Kubeconfig::read_from(&kubeconfig).unwrap(),
                &KubeConfigOptions::default(),
            )
            .await
            .unwrap();
            let api: Api<Pod> = Api::all(Client::try_from(config).unwrap());
            api.list(&ListParams::default()).await.unwrap().items.len()
        })
    })
    .join()
    .unwrap();
    assert_eq!(count, 1);
}

#[test]
fn start_blocking_needs_no_runtime() {
    let server = ApiServer::start_blocking();
    assert!(server.url().starts_with("https://127.0.0.1:"));
    assert!(server.ca_pem().contains("BEGIN CERTIFICATE"));
}
