//! End to end through the library: the testkit API server (real HTTPS, real kube client)
//! and real HTTPS extractors on 127.0.0.2… posing as extractor pods.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use gatherer::gather::gather;
use runtime_info::{workload_hash, ContainerRuntimeInfo, RuntimeComponent};
use serde_json::{json, Value};
use testkit::{ContainerState, PodBuilder};

fn java_info() -> ContainerRuntimeInfo {
    ContainerRuntimeInfo {
        os: "rhel".into(),
        os_version: "9.4".into(),
        kind: "Java".into(),
        kind_version: "17.0.7".into(),
        kind_implementer: "Red Hat, Inc.".into(),
        runtimes: vec![RuntimeComponent {
            name: "Quarkus".into(),
            version: "3.15.3".into(),
        }],
    }
}

/// A cluster exercising every rule, with one healthy node and one node per failure mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flow_with_failing_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let tls = tls(dir.path());
    let api = api_server().await;

    let mut pods = vec![
        // shop: web-0 first of its shape (asked), web-1 duplicate on another node (never asked).
        app_pod("shop", "web-0", "node-a", 1, 1),
        app_pod("shop", "web-1", "node-b", 1, 2),
        // api-0: init container + app + a terminated sidecar.
        PodBuilder::new("shop", "api-0")
            .node("node-b")
            .init_container(
                "init",
                "quay.io/shop/init:1",
                &format!("quay.io/shop/init@{}", digest(3)),
                &cid(4),
                ContainerState::Terminated,
            )
            .container(
                "app",
                "quay.io/shop/api:1",
                &format!("quay.io/shop/api@{}", digest(2)),
                &cid(3),
                ContainerState::Running,
            )
            .command(["/usr/bin/node", "server.js"])
            .args(["--port=8080"])
            .container(
                "sidecar",
                "quay.io/shop/side:1",
                &format!("docker-pullable://quay.io/shop/side@{}", digest(4)),
                &cid(5),
                ContainerState::Terminated,
            )
            .build(),
        // An entry the extractor answers as `{}`: dropped, no runtimeInfo.
        app_pod("shop", "empty-0", "node-a", 5, 6),
        // batch: a finished job (terminal), a pending pod with a waiting container (shape, no IDs),
        // an Unknown pod (ignored), a pod with only a tag (invalid).
        PodBuilder::new("batch", "job-0")
            .node("node-a")
            .phase("Succeeded")
            .container(
                "job",
                "quay.io/b/job:1",
                &format!("quay.io/b/job@{}", digest(6)),
                &cid(7),
                ContainerState::Terminated,
            )
            .build(),
        PodBuilder::new("batch", "pending-0")
            .node("node-a")
            .phase("Pending")
            .container(
                "w",
                "quay.io/b/w:1",
                &format!("quay.io/b/w@{}", digest(7)),
                &cid(8),
                ContainerState::Waiting,
            )
            .build(),
        PodBuilder::new("batch", "unknown-0")
            .node("node-a")
            .phase("Unknown")
            .container(
                "u",
                "quay.io/b/u:1",
                &format!("quay.io/b/u@{}", digest(8)),
                &cid(9),
                ContainerState::Running,
            )
            .build(),
        PodBuilder::new("batch", "tagonly-0")
            .node("node-a")
            .container(
                "t",
                "quay.io/b/t:latest",
                "",
                &cid(10),
                ContainerState::Running,
            )
            .build(),
    ];
    // misc: one pod per failing node, and one on a node without extractor.
    for (i, node) in ["node-c", "node-d", "node-e", "node-f", "node-g"]
        .iter()
        .enumerate()
    {
        let n = 20 + i as u64;
        pods.push(app_pod("misc", &format!("p-{node}"), node, n, n));
    }
    let nodes = [
        ("node-a", "127.0.0.2", Behaviour::Answer),
        ("node-b", "127.0.0.3", Behaviour::Answer),
        ("node-c", "127.0.0.4", Behaviour::Status(500)),
        ("node-d", "127.0.0.5", Behaviour::InvalidJson),
        ("node-e", "127.0.0.6", Behaviour::Close),
        (
            "node-f",
            "127.0.0.7",
            Behaviour::Slow(Duration::from_secs(8)),
        ),
    ];
    for (node, ip, _) in &nodes {
        pods.push(extractor_pod(node, ip));
    }
    // An extractor pod that is not Running is never used.
    pods.push(
        PodBuilder::new(EXTRACTOR_NS, "insights-runtime-extractor-pending")
            .node("node-g")
            .phase("Pending")
            .label("app.kubernetes.io/name", "insights-runtime-extractor")
            .pod_ip("127.0.0.8")
            .container(
                "extractor",
                "quay.io/openshift/extractor:latest",
                &format!("quay.io/openshift/extractor@{}", digest(999_999)),
                "",
                ContainerState::Waiting,
            )
            .build(),
    );
    api.set_pods(pods);

    let mut knowledge = Knowledge::new();
    knowledge.insert(
        cid(1),
        ("node-a".into(), "shop".into(), "web-0".into(), java_info()),
    );
    knowledge.insert(
        cid(2),
        ("node-b".into(), "shop".into(), "web-1".into(), java_info()),
    );
    knowledge.insert(
        cid(3),
        (
            "node-b".into(),
            "shop".into(),
            "api-0".into(),
            info("rhel", "Node.js"),
        ),
    );
    knowledge.insert(
        cid(4),
        (
            "node-b".into(),
            "shop".into(),
            "api-0".into(),
            info("rhel", "Init"),
        ),
    );
    knowledge.insert(
        cid(6),
        (
            "node-a".into(),
            "shop".into(),
            "empty-0".into(),
            ContainerRuntimeInfo::default(),
        ),
    );
    for i in 20..26 {
        knowledge.insert(
            cid(i),
            (
                format!("node-{}", (b'c' + (i - 20) as u8) as char),
                "misc".into(),
                "x".into(),
                info("x", "y"),
            ),
        );
    }
    let extractors = start_extractors(&nodes, &tls.cert, knowledge, Some(api.clone())).await;
    let settings = api_settings(
        &api,
        Some(runtime_settings(
            &tls,
            extractors.port,
            Duration::from_secs(2),
        )),
    )
    .await;

    let started = std::time::Instant::now();
    let report = gather(&settings).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the slow node is cut by --node-timeout"
    );

    // ---- What was asked, and when ----
    let recs = extractors.records();
    let asked = |ip: &str| -> Vec<String> {
        extractors
            .records_for(ip)
            .into_iter()
            .flat_map(|r| r.ids)
            .collect()
    };
    // node-a: the first pods of new shapes only, in list (etcd) order: the extractor pod of
    // node-a itself (the other extractor pods are duplicates of its shape), empty-0, web-0.
    assert_eq!(
        asked("127.0.0.2"),
        vec![cid(999_002), cid(6), cid(1)],
        "node-a"
    );
    assert_eq!(
        asked("127.0.0.3"),
        vec![cid(3)],
        "node-b: no duplicate, no init, no terminated container"
    );
    for r in recs.iter().filter(|r| r.authorization.is_some()) {
        assert_eq!(
            r.authorization.as_deref(),
            Some(&*format!("Bearer {TOKEN}"))
        );
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
        // The listing was complete (last page answered) and the extractors discovered
        // before any extractor was asked.
        let pages = pod_list_requests(&r.api_log);
        assert!(!pages.is_empty() && pages.iter().all(|p| p.status == 200));
        assert!(
            r.api_log.iter().any(
                |q| q.path == format!("/api/v1/namespaces/{EXTRACTOR_NS}/pods")
                    && q.query_param("labelSelector").as_deref()
                        == Some("app.kubernetes.io/name=insights-runtime-extractor")
            ),
            "{:?}",
            r.api_log
        );
    }
    let final_log = api.requests();
    assert_eq!(
        pod_list_requests(&final_log).len(),
        1,
        "one page (< 500 pods)"
    );
    assert!(final_log
        .iter()
        .all(|r| r.user.as_deref() == Some("system:serviceaccount:openshift-insights:operator")));
    assert!(extractors.records_for("127.0.0.8").is_empty());

    // ---- Status ----
    let s = &report.status;
    assert_eq!(s.pods, 8 + 5 + 7);
    assert!(!s.limit_reached);
    let rt = &s.runtime_info;
    assert!(rt.gathered);
    assert_eq!(rt.extractors_found, 6);
    assert_eq!(rt.nodes_asked, 6);
    assert_eq!(rt.nodes_answered, 2);
    assert_eq!(rt.containers_requested, 3 + 1 + 4);
    assert_eq!(rt.containers_answered, 2, "the `{{}}` entry is dropped");
    assert_eq!(rt.containers_merged, 2);
    assert_eq!(rt.nodes_without_extractor, vec!["node-g"]);
    let failed: BTreeMap<&str, &str> = rt
        .nodes_failed
        .iter()
        .map(|f| (f.node.as_str(), f.failure.reason.as_str()))
        .collect();
    assert_eq!(failed.len(), 4, "{failed:?}");
    assert!(
        failed["node-c"].contains(
            "received unexpected status code 500 Internal Server Error from https://127.0.0.4:"
        ),
        "{}",
        failed["node-c"]
    );
    assert_eq!(
        rt.nodes_failed
            .iter()
            .find(|f| f.node == "node-c")
            .unwrap()
            .failure
            .http_status,
        Some(500)
    );
    assert!(
        failed["node-d"].contains("unable to parse JSON content"),
        "{}",
        failed["node-d"]
    );
    assert!(
        failed["node-e"].contains("POST https://127.0.0.6:"),
        "{}",
        failed["node-e"]
    );
    assert!(
        failed["node-f"].contains("no answer") && failed["node-f"].contains("2s"),
        "{}",
        failed["node-f"]
    );
    assert_eq!(s.errors.len(), 4, "{:?}", s.errors);
    assert_eq!(s.image_api, gatherer::images::ImageApiState::Absent);

    // ---- The document ----
    check_invariants(&report.workload);
    let doc: Value = serde_json::from_slice(&report.workload.to_json().unwrap()).unwrap();
    let ns = |name: &str| doc["namespaces"][workload_hash(name)].clone();
    let shop = ns("shop");
    assert_eq!(shop["count"], 4);
    let shapes = shop["shapes"].as_array().unwrap();
    assert_eq!(shapes.len(), 3);
    // etcd order: api-0, empty-0, web-0, web-1.
    assert_eq!(
        shapes[0],
        json!({
            "restartAlways": true,
            "initContainers": [{"imageID": digest(3)}],
            "containers": [
                {"imageID": digest(2), "firstCommand": workload_hash("node"), "firstArg": workload_hash("--port"),
                 "runtimeInfo": {"os": workload_hash("rhel"), "kind": workload_hash("Node.js")}},
                {"imageID": digest(4)}
            ]
        })
    );
    assert_eq!(
        shapes[1],
        json!({"restartAlways": true, "containers": [{"imageID": digest(5)}]})
    );
    let j = java_info().anonymized();
    assert_eq!(
        shapes[2],
        json!({
            "duplicates": 1, "restartAlways": true,
            "containers": [{"imageID": digest(1), "runtimeInfo": serde_json::to_value(&j).unwrap()}]
        })
    );
    assert_eq!(
        ns("batch"),
        json!({"count": 4, "terminalCount": 1, "ignoredCount": 1, "invalidCount": 1,
               "shapes": [{"restartAlways": true, "containers": [{"imageID": digest(7)}]}]})
    );
    for shape in ns("misc")["shapes"].as_array().unwrap() {
        assert!(
            shape["containers"][0].get("runtimeInfo").is_none(),
            "failed nodes give no runtime info"
        );
    }
    assert_eq!(doc["pods"], 20);
    assert_eq!(
        doc["imageCount"],
        5 + 1 + 5 + 1,
        "unique image IDs of the shapes (incl. the extractor image)"
    );
    assert!(doc.get("images").is_none());
}

/// The whole document compared with a hand-computed expectation, images from the
/// OpenShift image API included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_matches_the_reference_rules_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let tls = tls(dir.path());
    let api = api_server().await;
    api.set_pods(vec![
        PodBuilder::new("alpha", "a-0")
            .node("n1")
            .restart_policy("OnFailure")
            .container(
                "c",
                "quay.io/a/c:1",
                &format!("quay.io/a/c@{}", digest(1)),
                &cid(1),
                ContainerState::Running,
            )
            .command(["bash -c 'echo hello'"])
            .args(["-v"])
            .build(),
        app_pod("beta", "b-0", "n1", 2, 2),
        extractor_pod("n1", "127.0.0.2"),
    ]);
    api.set_images(Some(vec![
        json!({"metadata": {"name": digest(1)},
               "dockerImageReference": format!("quay.io/a/c@{}", digest(1)),
               "dockerImageLayers": [{"name": "sha256:l1", "size": 1, "mediaType": "m"}],
               "dockerImageMetadata": {"ContainerConfig": {"Entrypoint": ["/bin/sh"], "Cmd": ["-c"]}},
               "dockerImageMetadataVersion": "1.0"}),
        json!({"metadata": {"name": digest(2)},
               "dockerImageReference": format!("registry.redhat.io/ubi9@{}", digest(2)),
               "dockerImageLayers": []}),
    ]));
    let mut knowledge = Knowledge::new();
    knowledge.insert(
        cid(1),
        ("n1".into(), "alpha".into(), "a-0".into(), java_info()),
    );
    let extractors = start_extractors(
        &[("n1", "127.0.0.2", Behaviour::Answer)],
        &tls.cert,
        knowledge,
        None,
    )
    .await;
    let settings = api_settings(
        &api,
        Some(runtime_settings(
            &tls,
            extractors.port,
            Duration::from_secs(10),
        )),
    )
    .await;
    let report = gather(&settings).await.unwrap();
    check_invariants(&report.workload);
    let doc: Value = serde_json::from_slice(&report.workload.to_json().unwrap()).unwrap();
    let expected = json!({
        "pods": 3,
        "imageCount": 3,
        "images": {
            digest(1): {"layerIDs": ["sha256:l1"], "firstCommand": workload_hash("sh"), "firstArg": workload_hash(""),
                        "repository": workload_hash(&format!("quay.io/a/c@{}", digest(1)))}
        },
        "namespaces": {
            workload_hash("alpha"): {"count": 1, "shapes": [{"restartAlways": false, "containers": [{
                "imageID": digest(1), "firstCommand": workload_hash("bash"), "firstArg": "47DEQpj8HBSa",
                "runtimeInfo": serde_json::to_value(java_info().anonymized()).unwrap()}]}]},
            workload_hash("beta"): {"count": 1, "shapes": [{"restartAlways": true, "containers": [{"imageID": digest(2)}]}]},
            workload_hash(EXTRACTOR_NS): {"count": 1, "shapes": [{"restartAlways": true, "containers": [{"imageID": digest(999_999)}]}]}
        }
    });
    assert_eq!(
        doc,
        expected,
        "{}",
        serde_json::to_string_pretty(&doc).unwrap()
    );
    assert_eq!(
        report.status.image_api,
        gatherer::images::ImageApiState::Present
    );
    assert_eq!(report.status.images_found, 2);
    assert!(
        report.status.errors.is_empty(),
        "{:?}",
        report.status.errors
    );
    // Compact, as Go's json.Marshal.
    let raw = String::from_utf8(report.workload.to_json().unwrap()).unwrap();
    assert!(!raw.contains('\n') && !raw.contains(": "));
}

/// No extractor running: the reference's error, the report is still produced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_running_extractor_is_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let tls = tls(dir.path());
    let api = api_server().await;
    api.set_pods(vec![app_pod("shop", "web-0", "n1", 1, 1)]);
    let settings = api_settings(
        &api,
        Some(runtime_settings(&tls, 1, Duration::from_secs(1))),
    )
    .await;
    let report = gather(&settings).await.unwrap();
    assert_eq!(report.status.pods, 1);
    assert!(!report.status.runtime_info.gathered);
    assert_eq!(report.status.errors.len(), 1);
    assert!(
        report.status.errors[0]
            .starts_with("no running pods found for the insights-runtime-extractor"),
        "{:?}",
        report.status.errors
    );
}

/// `--no-runtime-info`: the extractors are never discovered nor asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_runtime_info_asks_nobody() {
    let api = api_server().await;
    api.set_pods(vec![
        app_pod("shop", "web-0", "n1", 1, 1),
        extractor_pod("n1", "127.0.0.2"),
    ]);
    let settings = api_settings(&api, None).await;
    let report = gather(&settings).await.unwrap();
    assert_eq!(report.status.pods, 2);
    assert!(api
        .requests()
        .iter()
        .all(|r| !r.path.contains("/namespaces/")));
    assert_eq!(
        report.status.runtime_info.skipped_reason.as_deref(),
        Some("disabled with --no-runtime-info")
    );
}

/// Concurrency is bounded and nodes answer independently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let tls = tls(dir.path());
    let api = api_server().await;
    let mut pods = Vec::new();
    let mut nodes = Vec::new();
    let ips: Vec<String> = (2..8).map(|i| format!("127.0.1.{i}")).collect();
    for (i, ip) in ips.iter().enumerate() {
        let node = format!("node-{i}");
        pods.push(app_pod("shop", &format!("p{i}"), &node, i as u64, i as u64));
        pods.push(extractor_pod(&node, ip));
        nodes.push((node, ip.clone()));
    }
    api.set_pods(pods);
    let spec: Vec<(&str, &str, Behaviour)> = nodes
        .iter()
        .map(|(n, ip)| {
            (
                n.as_str(),
                ip.as_str(),
                Behaviour::Slow(Duration::from_millis(400)),
            )
        })
        .collect();
    let extractors = start_extractors(&spec, &tls.cert, Knowledge::new(), None).await;
    let mut rt = runtime_settings(&tls, extractors.port, Duration::from_secs(10));
    rt.concurrency = 2;
    let settings = api_settings(&api, Some(rt)).await;
    let started = std::time::Instant::now();
    let report = gather(&settings).await.unwrap();
    let took = started.elapsed();
    assert_eq!(report.status.runtime_info.nodes_answered, 6);
    // 6 nodes, 2 at a time, 400 ms each: at least 3 rounds.
    assert!(took >= Duration::from_millis(1150), "{took:?}");
    let mut times: Vec<_> = extractors.records().iter().map(|r| r.at).collect();
    times.sort();
    // No more than 2 requests arrive within any 300 ms window.
    for w in times.windows(3) {
        assert!(w[2] - w[0] >= Duration::from_millis(300), "{:?}", w);
    }
}

/// TestGetInsightsOperatorRuntimePodIPs through the API: empty list, no label, labelled but
/// not Running, and "some pods found" (namespace filter, phase filter, list order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extractor_discovery_filters() {
    use gatherer::extractors::{discover, ExtractorFilter, DEFAULT_SELECTOR};
    let api = api_server().await;
    let client = api.client(API_TOKEN).await;
    let filter = ExtractorFilter::new(EXTRACTOR_NS, DEFAULT_SELECTOR).unwrap();
    assert!(
        discover(&client, &filter).await.unwrap().is_empty(),
        "empty list"
    );
    api.set_pods(vec![PodBuilder::new(EXTRACTOR_NS, "pod-1")
        .node("n")
        .pod_ip("127.0.0.1")
        .build()]);
    assert!(
        discover(&client, &filter).await.unwrap().is_empty(),
        "no label"
    );
    let labelled = |ns: &str, name: &str| {
        PodBuilder::new(ns, name).label("app.kubernetes.io/name", "insights-runtime-extractor")
    };
    api.set_pods(vec![labelled(EXTRACTOR_NS, "pod-1").no_phase().build()]);
    assert!(
        discover(&client, &filter).await.unwrap().is_empty(),
        "label but not running"
    );
    api.set_pods(vec![
        labelled(EXTRACTOR_NS, "pod-1").no_phase().build(),
        labelled(EXTRACTOR_NS, "pod-2")
            .node("node-foo")
            .pod_ip("127.0.0.1")
            .build(),
        labelled("openshift-another", "pod-3")
            .node("node-x")
            .pod_ip("127.0.0.2")
            .build(),
        labelled(EXTRACTOR_NS, "pod-4")
            .node("node-bar")
            .pod_ip("127.0.0.10")
            .build(),
    ]);
    let found: Vec<(String, String)> = discover(&client, &filter)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.node, p.pod_ip))
        .collect();
    assert_eq!(
        found,
        vec![
            ("node-foo".to_owned(), "127.0.0.1".to_owned()),
            ("node-bar".to_owned(), "127.0.0.10".to_owned())
        ]
    );
    // All namespaces.
    let all = ExtractorFilter::new("", DEFAULT_SELECTOR).unwrap();
    assert_eq!(discover(&client, &all).await.unwrap().len(), 3);
}
