//! Paging, the 8000-pod limit and expired continue tokens, against the testkit API server.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use gatherer::gather::gather;
use gatherer::pods::{list_from_api, ListOptions, PodsError};
use k8s_openapi::api::core::v1::Pod;
use runtime_info::workload_hash;
use testkit::ApiServer;

/// `count` pods in `ns` on node `n1`, each with its own image (so each is a new shape),
/// numbered from `first`.
fn pods(ns: &str, first: u64, count: u64) -> Vec<Pod> {
    (first..first + count)
        .map(|i| app_pod(ns, &format!("p-{i:06}"), "n1", i, i))
        .collect()
}

/// 8500 pods over three namespaces, one extractor: exactly 8000 pods are counted, the
/// 17th page is the last one read, and no container past the limit is requested.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_8000_across_namespaces_counts_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let tls = tls(dir.path());
    let api = api_server().await;
    let mut all = pods("ns-a", 0, 3000);
    all.extend(pods("ns-b", 3000, 3000));
    all.extend(pods("ns-c", 6000, 2500));
    // Listed first (etcd order: "aaa" < "ns-…"): the extractor pod itself is counted.
    let mut extractor = extractor_pod("n1", "127.0.0.2");
    extractor.metadata.namespace = Some("aaa-insights".into());
    all.push(extractor);
    api.set_pods(all);
    let extractors = start_extractors(
        &[("n1", "127.0.0.2", Behaviour::Answer)],
        &tls.cert,
        Knowledge::new(),
        None,
    )
    .await;
    let mut rt = runtime_settings(&tls, extractors.port, Duration::from_secs(60));
    rt.filter = gatherer::extractors::ExtractorFilter::new(
        "aaa-insights",
        gatherer::extractors::DEFAULT_SELECTOR,
    )
    .unwrap();
    let report = gather(&api_settings(&api, Some(rt)).await).await.unwrap();

    check_invariants(&report.workload);
    let s = &report.status;
    assert_eq!(s.pods, 8000);
    assert!(s.limit_reached);
    assert_eq!(
        s.errors,
        vec!["the 8000 limit for number of pods gathered was reached".to_owned()]
    );
    let ns = report.workload.namespaces.as_ref().unwrap();
    assert_eq!(ns[&workload_hash("aaa-insights")].count, 1);
    assert_eq!(ns[&workload_hash("ns-a")].count, 3000);
    assert_eq!(ns[&workload_hash("ns-b")].count, 3000);
    assert_eq!(ns[&workload_hash("ns-c")].count, 1999);
    assert_eq!(report.workload.pod_count, 8000);
    assert_eq!(report.workload.image_count, 8000);

    // 16 full pages hold 8000 pods; the 8001st pod is on page 17, after which nothing is read.
    let pages = api
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v1/pods")
        .count();
    assert_eq!(pages, 17);
    assert_eq!(s.pages, 17);

    // Exactly the IDs of the 8000 counted pods were requested.
    let requested: Vec<String> = extractors
        .records()
        .into_iter()
        .flat_map(|r| r.ids)
        .collect();
    assert_eq!(requested.len(), 8000);
    let requested: HashSet<String> = requested.into_iter().collect();
    let mut expected: HashSet<String> = (0..7999).map(cid).collect();
    expected.insert(cid(999_002));
    assert_eq!(requested, expected);
    assert!(
        !requested.contains(&cid(7999)),
        "the 8001st pod is never asked about"
    );
}

/// The 8001st pod starts a new namespace: that namespace appears with count 0 (reference
/// behaviour), and exactly 8000 pods are not "limit reached".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_at_a_namespace_boundary() {
    let api = api_server().await;
    api.set_pods(pods("ns-a", 0, 8000));
    let report = gather(&api_settings(&api, None).await).await.unwrap();
    assert_eq!(report.status.pods, 8000);
    assert!(
        !report.status.limit_reached,
        "8000 pods exactly: the limit is not reached"
    );
    assert!(report.status.errors.is_empty());

    api.add_pods(pods("ns-b", 8000, 5));
    let report = gather(&api_settings(&api, None).await).await.unwrap();
    assert!(report.status.limit_reached);
    let ns = report.workload.namespaces.as_ref().unwrap();
    assert_eq!(ns.len(), 2);
    let b = &ns[&workload_hash("ns-b")];
    assert_eq!((b.count, b.shapes.len()), (0, 0));
    let json = String::from_utf8(report.workload.to_json().unwrap()).unwrap();
    assert!(json.contains(&format!(
        r#""{}":{{"count":0,"shapes":[]}}"#,
        workload_hash("ns-b")
    )));
}

/// Starts a thread that expires every continue token each time a new pod page has been
/// served, `times` times. The server's list delay gives the thread time to act before the
/// next page is answered.
fn expire_after_pages(api: Arc<ApiServer>, times: usize) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    std::thread::spawn(move || {
        let mut seen = 0;
        let mut expired = 0;
        while !stop2.load(Ordering::Relaxed) && expired < times {
            let served = api
                .requests()
                .iter()
                .filter(|r| r.path == "/api/v1/pods" && r.status == 200)
                .count();
            if served > seen {
                seen = served;
                api.expire_continue_tokens();
                expired += 1;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    stop
}

/// An expired continue token restarts the listing from scratch: nothing is counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_continue_token_restarts_the_listing_cleanly() {
    let api = api_server().await;
    api.set_pods(pods("ns-a", 0, 1200));
    api.set_list_delay(Duration::from_millis(250));
    let stop = expire_after_pages(api.clone(), 1);
    let client = api.client(API_TOKEN).await;
    let listing = list_from_api(&client, &ListOptions::default())
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    assert_eq!(listing.restarts, 1);
    assert_eq!(listing.gathered.info.pod_count, 1200);
    assert_eq!(listing.gathered.info.shape_count(), 1200);
    assert_eq!(
        listing.gathered.container_ids.total(),
        1200,
        "ID lists were reset too"
    );
    assert_eq!(listing.pages, 4, "one page, then three after the restart");
    let log: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v1/pods")
        .collect();
    assert_eq!(
        log.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![200, 410, 200, 200, 200]
    );
    assert!(
        log[2].query_param("continue").is_none(),
        "the restart starts from the first page"
    );
}

/// Tokens that keep expiring: a bounded number of restarts, then a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_are_bounded() {
    let api = api_server().await;
    api.set_pods(pods("ns-a", 0, 1200));
    api.set_list_delay(Duration::from_millis(150));
    let stop = expire_after_pages(api.clone(), 100);
    let client = api.client(API_TOKEN).await;
    let opts = ListOptions {
        max_restarts: 2,
        ..Default::default()
    };
    let err = list_from_api(&client, &opts).await.unwrap_err();
    stop.store(true, Ordering::Relaxed);
    assert!(matches!(err, PodsError::TooManyRestarts(2)), "{err}");
    assert!(err.to_string().contains("410 Gone"), "{err}");
}

/// A page size of 500 and the continue token are what is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_500_with_continue() {
    let api = api_server().await;
    api.set_pods(pods("ns-a", 0, 1001));
    let client = api.client(API_TOKEN).await;
    let listing = list_from_api(&client, &ListOptions::default())
        .await
        .unwrap();
    assert_eq!(listing.pages, 3);
    assert_eq!(listing.gathered.info.pod_count, 1001);
    let log: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v1/pods")
        .collect();
    assert_eq!(log.len(), 3);
    for (i, r) in log.iter().enumerate() {
        assert_eq!(r.query_param("limit").as_deref(), Some("500"));
        assert_eq!(r.query_param("continue").is_some(), i > 0);
    }
}

/// An API failure (here: an unknown token → 401) fails the gather with one clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_fail_the_listing() {
    let api = api_server().await;
    api.set_pods(pods("ns-a", 0, 3));
    let client = api.client("not-a-valid-token").await;
    let err = list_from_api(&client, &ListOptions::default())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("cannot list pods (page 1)"), "{msg}");
    assert!(
        msg.contains("401") || msg.to_lowercase().contains("unauthorized"),
        "{msg}"
    );
}
