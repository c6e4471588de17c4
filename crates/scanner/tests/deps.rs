//! The privileged binary stays small: its normal dependency tree (what is linked into the
//! process that runs as root on every node) holds no HTTP server, TLS, Kubernetes client or
//! Prometheus crate. Those belong to the `service` crate, which talks to the scanner only
//! through the `scanner-proto` frames.

use std::collections::BTreeSet;
use std::process::Command;

/// Crates that must never be linked into the scanner.
const BANNED: &[&str] = &[
    "kube",
    "kube-client",
    "kube-core",
    "k8s-openapi",
    "axum",
    "axum-server",
    "rustls",
    "tokio-rustls",
    "ring",
    "prometheus-client",
    "reqwest",
    "service",
    "gatherer",
];

/// The tree had 214 crates before the privilege split and 103 after it (docs/architecture.md);
/// a new dependency that pushes it past this bound deserves a look by a reviewer.
const MAX_CRATES: usize = 107;

fn normal_tree(package: &str) -> BTreeSet<(String, String)> {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree", "--locked", "-e", "normal", "--prefix", "none", "-p", package,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("cargo tree prints UTF-8")
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?.to_owned(), words.next()?.to_owned()))
        })
        .filter(|(name, _)| name != package)
        .collect()
}

#[test]
fn privileged_tree_links_no_network_tls_kubernetes_or_metrics_crate() {
    let tree = normal_tree("scanner");
    let names: BTreeSet<&str> = tree.iter().map(|(n, _)| n.as_str()).collect();
    let found: Vec<&&str> = BANNED.iter().filter(|b| names.contains(**b)).collect();
    assert!(
        found.is_empty(),
        "the scanner's normal dependency tree contains {found:?}"
    );
    // The check itself works: the service's tree has them.
    let service = normal_tree("service");
    for expected in ["kube", "axum", "rustls", "prometheus-client"] {
        assert!(
            service.iter().any(|(n, _)| n == expected),
            "service tree lacks {expected}: is `cargo tree` output still parsed right?"
        );
    }
    assert!(
        tree.len() <= MAX_CRATES,
        "the scanner now links {} crates (bound {MAX_CRATES}): {names:?}",
        tree.len()
    );
}
