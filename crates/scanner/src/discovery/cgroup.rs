//! Fallback host-PID lookup from cgroup membership, for runtimes whose verbose
//! `ContainerStatus` carries no usable `pid` (the CRI leaves `info` runtime-specific).
//!
//! Every container runtime puts a container's processes in a cgroup whose last path component
//! names the container ID: `<id>` (containerd, cgroupfs), `cri-containerd-<id>.scope`,
//! `crio-<id>.scope` / `crio-<id>` (CRI-O), `docker-<id>.scope`. CRI-O's monitor lives in
//! `crio-conmon-<id>…`, which must not match: it is not the workload.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// `/proc/<pid>/cgroup` is a few lines per hierarchy; more than this is not a real one.
const MAX_CGROUP_FILE: u64 = 64 * 1024;
const MAX_STAT_FILE: u64 = 4 * 1024;

/// For each of `ids` (64-hex), the PID (in `proc_root`'s PID namespace) of the container's
/// first process: the member of its cgroup whose parent is not a member (oldest on ties).
/// IDs with no process are absent from the answer. One pass over `proc_root`.
pub fn find_container_pids(proc_root: &Path, ids: &[&str]) -> HashMap<String, u32> {
    let wanted: HashSet<&str> = ids.iter().copied().collect();
    let mut members: HashMap<&str, Vec<u32>> = HashMap::new();
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        tracing::debug!(root = %proc_root.display(), "cannot list procfs for cgroup lookup");
        return HashMap::new();
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // Processes exit during the scan: unreadable ones are simply not members.
        let Ok(text) = read_capped(&entry.path().join("cgroup"), MAX_CGROUP_FILE) else {
            continue;
        };
        if let Some(id) = container_of(&text, &wanted) {
            members.entry(id).or_default().push(pid);
        }
    }
    members
        .into_iter()
        .filter_map(|(id, pids)| Some((id.to_owned(), init_of(proc_root, &pids)?)))
        .collect()
}

/// Which wanted container (if any) a `/proc/<pid>/cgroup` text places the process in.
fn container_of<'a>(cgroup_file: &str, wanted: &HashSet<&'a str>) -> Option<&'a str> {
    for line in cgroup_file.lines() {
        // hierarchy-id:controllers:path (the path may itself contain ':').
        let Some(path) = line.splitn(3, ':').nth(2) else {
            continue;
        };
        let Some(last) = path.rsplit('/').find(|c| !c.is_empty()) else {
            continue;
        };
        if last.contains("conmon") {
            continue;
        }
        let stem = last.strip_suffix(".scope").unwrap_or(last);
        let Some(split) = stem.len().checked_sub(64) else {
            continue;
        };
        let Some((prefix, hex)) = stem.split_at_checked(split) else {
            continue;
        };
        if !(prefix.is_empty() || prefix.ends_with('-')) {
            continue;
        }
        if let Some(id) = wanted.get(hex) {
            return Some(id);
        }
    }
    None
}

/// The process of `pids` whose parent is outside the set; the oldest if several.
fn init_of(proc_root: &Path, pids: &[u32]) -> Option<u32> {
    let set: HashSet<u32> = pids.iter().copied().collect();
    pids.iter()
        .filter_map(|&pid| {
            let stat =
                read_capped(&proc_root.join(pid.to_string()).join("stat"), MAX_STAT_FILE).ok()?;
            let (ppid, start) = parse_stat(&stat)?;
            (!set.contains(&ppid)).then_some((start, pid))
        })
        .min()
        .map(|(_, pid)| pid)
}

/// `(ppid, starttime)` from `/proc/<pid>/stat`; `comm` may hold spaces and parentheses, so
/// fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<(u32, u64)> {
    scanner_proto::identity::parse_stat(text).map(|s| (s.ppid, s.start_time))
}

fn read_capped(path: &Path, max: u64) -> std::io::Result<String> {
    let mut buf = Vec::new();
    File::open(path)?.take(max).read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn wanted() -> HashSet<&'static str> {
        HashSet::from([A, B])
    }

    #[test]
    fn recognises_every_runtime_naming() {
        let cases = [
            format!("12:pids:/kubepods/besteffort/pod1/{A}\n"),
            format!("0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-{A}.scope\n"),
            format!("0::/kubepods.slice/kubepods-burstable.slice/x.slice/crio-{A}.scope\n"),
            format!("3:cpu,cpuacct:/kubepods/pod1/crio-{A}\n"),
            format!("1:name=systemd:/system.slice/docker-{A}.scope\n"),
            // An ID in a middle component with a trailing slash still ends the path.
            format!("0::/ri-test/{A}/\n"),
        ];
        for text in &cases {
            assert_eq!(container_of(text, &wanted()), Some(A), "{text}");
        }
    }

    #[test]
    fn rejects_conmon_other_ids_and_near_misses() {
        let cases = [
            format!("0::/kubepods.slice/crio-conmon-{A}.scope\n"),
            format!("0::/kubepods/pod1/{}\n", "c".repeat(64)),
            format!("0::/kubepods/pod1/x{A}\n"),
            format!("0::/kubepods/{A}/child\n"),
            format!("0::/kubepods/pod1/{}\n", &A[1..]),
            "garbage without colons\n".to_owned(),
            "0::/\n".to_owned(),
            "0::/é\n".to_owned(),
        ];
        for text in &cases {
            assert_eq!(container_of(text, &wanted()), None, "{text}");
        }
    }

    #[test]
    fn stat_with_hostile_comm() {
        let text = "42 (a) b) (c) S 7 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10";
        assert_eq!(parse_stat(text), Some((7, 123456)));
        assert_eq!(parse_stat("1 (x) S"), None);
        assert_eq!(parse_stat("no paren"), None);
    }

    fn fake_proc(root: &Path, pid: u32, ppid: u32, start: u64, cgroup: &str) {
        let dir = root.join(pid.to_string());
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("cgroup"), cgroup).unwrap();
        fs::write(
            dir.join("stat"),
            format!("{pid} (p) S {ppid} 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {start} 0 0"),
        )
        .unwrap();
    }

    #[test]
    fn picks_the_container_init_not_its_children_nor_conmon() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fake_proc(
            p,
            100,
            1,
            50,
            &format!("0::/kubepods/crio-conmon-{A}.scope\n"),
        );
        fake_proc(p, 205, 100, 60, &format!("0::/kubepods/crio-{A}.scope\n")); // init
        fake_proc(p, 150, 205, 70, &format!("0::/kubepods/crio-{A}.scope\n")); // child, lower pid
        fake_proc(p, 300, 1, 80, &format!("0::/kubepods/crio-{B}.scope\n"));
        fake_proc(p, 400, 1, 90, "0::/user.slice\n");
        fs::create_dir_all(p.join("self")).unwrap(); // non-numeric entries are ignored
        let found = find_container_pids(p, &[A, B, &"d".repeat(64)]);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[A], 205);
        assert_eq!(found[B], 300);
    }

    #[test]
    fn missing_procfs_finds_nothing() {
        assert!(find_container_pids(Path::new("/nonexistent/proc"), &[A]).is_empty());
    }
}
