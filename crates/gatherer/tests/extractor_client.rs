//! The per-node client on its own: request shape, TLS trust (only the given CA, only the
//! given server name), and each failure mode, against real HTTPS servers.

mod common;

use std::time::Duration;

use common::*;
use gatherer::extractors::{fetch_all, fetch_node, ClientConfig, ExtractorPod, NodeRequest};
use gatherer::output::RuntimeKey;
use testkit::TestCa;

fn request(node: &str, ip: &str, ids: Vec<String>) -> NodeRequest {
    NodeRequest {
        node: node.into(),
        pod: ExtractorPod {
            namespace: EXTRACTOR_NS.into(),
            name: format!("x-{node}"),
            node: node.into(),
            pod_ip: ip.into(),
        },
        container_ids: ids,
    }
}

fn config(tls: &Tls, port: u16, timeout: Duration) -> ClientConfig {
    ClientConfig::load(
        port,
        SERVER_NAME,
        &tls.ca_file,
        &tls.token_file,
        32,
        timeout,
    )
    .unwrap()
}

fn knowledge_for(node: &str, ids: &[u64]) -> Knowledge {
    ids.iter()
        .map(|&i| {
            (
                cid(i),
                (
                    node.to_owned(),
                    "ns".to_owned(),
                    format!("pod-{i}"),
                    info("rhel", "Java"),
                ),
            )
        })
        .collect()
}

/// TestGetNodeWorkloadRuntimeInfos_POSTRequestBody + "authorization header is set" +
/// "valid data": POST, JSON content type, bearer token, the IDs in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_body_headers_and_answer() {
    let dir = tempfile::tempdir().unwrap();
    let tls = tls(dir.path());
    let ex = start_extractors(
        &[("n1", "127.0.2.2", Behaviour::Answer)],
        &tls.cert,
        knowledge_for("n1", &[1, 2]),
        None,
    )
    .await;
    let cfg = config(&tls, ex.port, Duration::from_secs(10));
    let out = fetch_node(
        &cfg,
        &request("n1", "127.0.2.2", vec![cid(1), cid(2), cid(3)]),
    )
    .await;
    let infos = out.result.unwrap();
    assert_eq!(infos.len(), 2, "unknown IDs are skipped by the extractor");
    let key = RuntimeKey {
        namespace: "ns".into(),
        pod: "pod-1".into(),
        container_id: cid(1),
    };
    assert_eq!(infos[&key].os, runtime_info::workload_hash("rhel"));
    let recs = ex.records();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].ids, vec![cid(1), cid(2), cid(3)]);
    assert_eq!(
        recs[0].authorization.as_deref(),
        Some("Bearer operator-sa-token")
    );
    assert_eq!(recs[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(out.containers_requested, 3);
}

/// The token file's trailing newline is not sent; a wrong token gets the server's 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_handling() {
    let dir = tempfile::tempdir().unwrap();
    let tls = tls(dir.path());
    std::fs::write(&tls.token_file, format!("{TOKEN}\n")).unwrap();
    let ex = start_extractors(
        &[("n1", "127.0.2.3", Behaviour::Answer)],
        &tls.cert,
        Knowledge::new(),
        None,
    )
    .await;
    let out = fetch_node(
        &config(&tls, ex.port, Duration::from_secs(10)),
        &request("n1", "127.0.2.3", vec![cid(1)]),
    )
    .await;
    assert!(out.result.is_ok(), "{:?}", out.result);

    std::fs::write(&tls.token_file, "someone-else").unwrap();
    let out = fetch_node(
        &config(&tls, ex.port, Duration::from_secs(10)),
        &request("n1", "127.0.2.3", vec![cid(1)]),
    )
    .await;
    let f = out.result.unwrap_err();
    assert_eq!(f.http_status, Some(401));

    std::fs::write(&tls.token_file, "bad\ntoken").unwrap();
    let e = ClientConfig::load(
        1,
        SERVER_NAME,
        &tls.ca_file,
        &tls.token_file,
        1,
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("not allowed in an HTTP header"),
        "{e}"
    );
    let e = ClientConfig::load(
        1,
        SERVER_NAME,
        &tls.ca_file,
        &dir.path().join("missing"),
        1,
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("cannot read service account token file"),
        "{e}"
    );
    std::fs::write(dir.path().join("empty.pem"), "not a certificate").unwrap();
    let e = ClientConfig::load(
        1,
        SERVER_NAME,
        &dir.path().join("empty.pem"),
        &tls.token_file,
        1,
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert!(e.to_string().contains("no usable PEM certificate"), "{e}");
    let e = ClientConfig::load(
        1,
        "10.0.0.1",
        &tls.ca_file,
        &tls.token_file,
        1,
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert!(e.to_string().contains("must be a DNS name"), "{e}");
}

/// A certificate from another CA is refused (only --extractor-ca-file is trusted, not the
/// system roots), and nothing is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tls = tls(dir.path());
    let other = TestCa::new("someone else");
    let ex = start_extractors(
        &[("n1", "127.0.2.4", Behaviour::Answer)],
        &other.issue_server(&[SERVER_NAME], &[]),
        Knowledge::new(),
        None,
    )
    .await;
    let out = fetch_node(
        &config(&tls, ex.port, Duration::from_secs(10)),
        &request("n1", "127.0.2.4", vec![cid(1)]),
    )
    .await;
    let f = out.result.unwrap_err();
    assert!(f.reason.contains("certificate"), "{}", f.reason);
    assert!(f.reason.contains("UnknownIssuer"), "{}", f.reason);
    assert!(ex.records().is_empty(), "no request went through");
}

/// A certificate for another name is refused, even from the trusted CA; a certificate for
/// the pod IP only (not the service name) is refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_server_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tls = tls(dir.path());
    for cert in [
        tls.ca
            .issue_server(&["other.openshift-insights.svc.cluster.local"], &[]),
        tls.ca.issue_server(&[], &["127.0.2.5".parse().unwrap()]),
    ] {
        let ex = start_extractors(
            &[("n1", "127.0.2.5", Behaviour::Answer)],
            &cert,
            Knowledge::new(),
            None,
        )
        .await;
        let out = fetch_node(
            &config(&tls, ex.port, Duration::from_secs(10)),
            &request("n1", "127.0.2.5", vec![cid(1)]),
        )
        .await;
        let f = out.result.unwrap_err();
        assert!(
            f.reason.contains(
                "certificate not valid for name \"exporter.openshift-insights.svc.cluster.local\""
            ),
            "{}",
            f.reason
        );
        assert!(ex.records().is_empty());
    }
}

/// Every failure mode is reported per node with a clear reason, and the other nodes still answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_per_node() {
    let dir = tempfile::tempdir().unwrap();
    let tls = tls(dir.path());
    let mut knowledge = knowledge_for("ok-1", &[1]);
    knowledge.extend(knowledge_for("ok-2", &[2]));
    let nodes = [
        ("ok-1", "127.0.3.2", Behaviour::Answer),
        (
            "slow",
            "127.0.3.3",
            Behaviour::Slow(Duration::from_secs(10)),
        ),
        ("err500", "127.0.3.4", Behaviour::Status(500)),
        ("badjson", "127.0.3.5", Behaviour::InvalidJson),
        ("closes", "127.0.3.6", Behaviour::Close),
        ("ok-2", "127.0.3.7", Behaviour::Answer),
    ];
    let ex = start_extractors(&nodes, &tls.cert, knowledge, None).await;
    let mut requests: Vec<NodeRequest> = nodes
        .iter()
        .enumerate()
        .map(|(i, (n, ip, _))| request(n, ip, vec![cid(i as u64 + 1)]))
        .collect();
    requests[5].container_ids = vec![cid(2)];
    // Nothing listens on this address.
    requests.push(request("refused", "127.0.3.8", vec![cid(9)]));
    requests.push(request("noip", "", vec![cid(9)]));
    let cfg = config(&tls, ex.port, Duration::from_millis(700));
    let started = std::time::Instant::now();
    let outcomes = fetch_all(&cfg, requests).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the slow node is cut at 700 ms"
    );
    let by_node = |n: &str| outcomes.iter().find(|o| o.node == n).unwrap();
    assert_eq!(by_node("ok-1").result.as_ref().unwrap().len(), 1);
    assert_eq!(by_node("ok-2").result.as_ref().unwrap().len(), 1);
    let reason = |n: &str| by_node(n).result.as_ref().unwrap_err().reason.clone();
    assert!(
        reason("slow").contains("no answer from https://127.0.3.3:")
            && reason("slow").contains("700ms"),
        "{}",
        reason("slow")
    );
    assert_eq!(reason("err500"), format!("received unexpected status code 500 Internal Server Error from https://127.0.3.4:{}/gather_runtime_info", ex.port));
    assert!(
        reason("badjson").starts_with("unable to parse JSON content from https://127.0.3.5:"),
        "{}",
        reason("badjson")
    );
    assert!(
        reason("badjson").contains("expected"),
        "{}",
        reason("badjson")
    );
    assert!(
        reason("closes").starts_with("POST https://127.0.3.6:"),
        "{}",
        reason("closes")
    );
    assert!(
        reason("refused").to_lowercase().contains("connect"),
        "{}",
        reason("refused")
    );
    assert!(
        reason("noip").contains("no valid pod IP"),
        "{}",
        reason("noip")
    );
}

/// IPv6 pod IPs: dialled on [::1] while the certificate is checked for the service name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_pod_ip() {
    let dir = tempfile::tempdir().unwrap();
    let tls = tls(dir.path());
    if let Err(e) = std::net::TcpListener::bind("[::1]:0") {
        panic!("ipv6_pod_ip needs an IPv6 loopback address (::1): {e}");
    }
    let ex = start_extractors(
        &[("n6", "::1", Behaviour::Answer)],
        &tls.cert,
        knowledge_for("n6", &[1]),
        None,
    )
    .await;
    let out = fetch_node(
        &config(&tls, ex.port, Duration::from_secs(10)),
        &request("n6", "::1", vec![cid(1)]),
    )
    .await;
    assert_eq!(out.result.unwrap().len(), 1);
}

/// A response larger than the bound is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_answers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tls = tls(dir.path());
    let ids: Vec<u64> = (0..200).collect();
    let ex = start_extractors(
        &[("n1", "127.0.2.9", Behaviour::Answer)],
        &tls.cert,
        knowledge_for("n1", &ids),
        None,
    )
    .await;
    let mut cfg = config(&tls, ex.port, Duration::from_secs(10));
    cfg.max_response_bytes = 1000;
    let out = fetch_node(
        &cfg,
        &request("n1", "127.0.2.9", ids.iter().map(|&i| cid(i)).collect()),
    )
    .await;
    assert!(out
        .result
        .unwrap_err()
        .reason
        .contains("larger than 1000 bytes"));
}

/// Container IDs are sent exactly as the pod status has them (prefixed or not); the
/// extractor strips prefixes itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_ids_are_sent_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let tls = tls(dir.path());
    let ex = start_extractors(
        &[("n1", "127.0.2.10", Behaviour::Answer)],
        &tls.cert,
        Knowledge::new(),
        None,
    )
    .await;
    let hex = "ab".repeat(32);
    let ids = vec![
        format!("cri-o://{hex}"),
        format!("containerd://{hex}"),
        hex.clone(),
    ];
    let out = fetch_node(
        &config(&tls, ex.port, Duration::from_secs(10)),
        &request("n1", "127.0.2.10", ids.clone()),
    )
    .await;
    assert!(out.result.unwrap().is_empty());
    assert_eq!(ex.records()[0].ids, ids);
}
