//! Per-container results, valid while the container's root process is the same one.
//!
//! A container's process is identified by its PID and start time (PIDs are reused, the pair
//! is not): if either changed, the container restarted and may run something else, so the
//! entry is stale. The check costs one `listOnly` scanner call per request, which reads the
//! CRI and `/proc/<pid>/stat` only. Entries also expire after `max_age` (the files a process
//! reads can change under it) and the least recently stored go first when the cache is full.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runtime_info::ContainerRuntimeInfo;

/// Where a container belongs (fixed for the life of a container ID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub namespace: String,
    pub pod: String,
    /// As the scanner reports it (`containerd://…`).
    pub container_id: String,
}

#[derive(Debug, Clone)]
struct Entry {
    pid: u32,
    start_time: u64,
    placement: Arc<Placement>,
    info: Arc<ContainerRuntimeInfo>,
    stored: Instant,
}

/// A cache entry as returned by [`ResultCache::peek`].
#[derive(Debug, Clone)]
pub struct Cached {
    pub pid: u32,
    pub start_time: u64,
    pub placement: Arc<Placement>,
    pub info: Arc<ContainerRuntimeInfo>,
}

#[derive(Debug)]
pub struct ResultCache {
    entries: Mutex<HashMap<String, Entry>>,
    capacity: usize,
    /// `None` = no age bound.
    max_age: Option<Duration>,
}

impl ResultCache {
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        ResultCache {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            max_age: (!max_age.is_zero()).then_some(max_age),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached result for the container (keyed by its 64-hex ID) if it was computed for
    /// this very process.
    pub fn get(&self, hex: &str, pid: u32, start_time: u64) -> Option<Arc<ContainerRuntimeInfo>> {
        let mut entries = self.lock();
        let e = entries.get(hex)?;
        let fresh = self.max_age.is_none_or(|max| e.stored.elapsed() < max);
        if e.pid == pid && e.start_time == start_time && fresh {
            return Some(Arc::clone(&e.info));
        }
        entries.remove(hex);
        None
    }

    /// The entry for a container whatever its process, if not expired (the caller checks
    /// the process identity itself).
    pub fn peek(&self, hex: &str) -> Option<Cached> {
        let entries = self.lock();
        let e = entries.get(hex)?;
        if self.max_age.is_some_and(|max| e.stored.elapsed() >= max) {
            return None;
        }
        Some(Cached {
            pid: e.pid,
            start_time: e.start_time,
            placement: Arc::clone(&e.placement),
            info: Arc::clone(&e.info),
        })
    }

    pub fn insert(
        &self,
        hex: &str,
        pid: u32,
        start_time: u64,
        placement: Placement,
        info: Arc<ContainerRuntimeInfo>,
    ) {
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(hex) {
            // Full: drop the oldest tenth in one pass rather than scanning on every insert.
            let mut ages: Vec<(Instant, String)> =
                entries.iter().map(|(k, e)| (e.stored, k.clone())).collect();
            ages.sort_unstable();
            let n = (self.capacity / 10).max(1);
            for (_, k) in ages.into_iter().take(n) {
                entries.remove(&k);
            }
        }
        entries.insert(
            hex.to_owned(),
            Entry {
                pid,
                start_time,
                placement: Arc::new(placement),
                info,
                stored: Instant::now(),
            },
        );
    }

    /// Forget every container not in `running` (the full list of the node's containers).
    pub fn retain_running(&self, running: &HashSet<String>) -> usize {
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|k, _| running.contains(k));
        before - entries.len()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of cached containers per (kind, kind version), for the info gauge.
    pub fn kinds(&self) -> BTreeMap<(String, String), i64> {
        let mut out = BTreeMap::new();
        for e in self.lock().values() {
            if e.info.kind.is_empty() {
                continue;
            }
            *out.entry((e.info.kind.clone(), e.info.kind_version.clone()))
                .or_insert(0) += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> Placement {
        Placement {
            namespace: "ns".into(),
            pod: "p".into(),
            container_id: "containerd://x".into(),
        }
    }

    fn info(kind: &str) -> Arc<ContainerRuntimeInfo> {
        Arc::new(ContainerRuntimeInfo {
            kind: kind.into(),
            kind_version: "1".into(),
            ..Default::default()
        })
    }

    #[test]
    fn valid_only_for_the_same_process() {
        let c = ResultCache::new(10, Duration::ZERO);
        c.insert("a", 10, 100, at(), info("Java"));
        assert!(c.get("a", 10, 100).is_some());
        assert!(
            c.get("a", 10, 101).is_none(),
            "restarted: start time changed"
        );
        assert!(c.get("a", 10, 100).is_none(), "stale entry was removed");
        c.insert("a", 10, 100, at(), info("Java"));
        assert!(c.get("a", 11, 100).is_none(), "different PID");
        assert!(c.get("b", 10, 100).is_none());
    }

    #[test]
    fn expires_after_max_age() {
        let c = ResultCache::new(10, Duration::from_millis(30));
        c.insert("a", 1, 1, at(), info("Go"));
        assert!(c.get("a", 1, 1).is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(c.peek("a").is_none());
        assert!(c.get("a", 1, 1).is_none());
    }

    #[test]
    fn bounded_and_prunable() {
        let c = ResultCache::new(20, Duration::ZERO);
        for i in 0..100 {
            c.insert(&format!("{i}"), i, 1, at(), info("Python"));
        }
        assert!(c.len() <= 20, "{}", c.len());
        assert!(c.get("99", 99, 1).is_some(), "newest kept");
        assert!(c.get("0", 0, 1).is_none(), "oldest evicted");
        let keep: HashSet<String> = ["99".to_owned()].into();
        c.retain_running(&keep);
        assert_eq!(c.len(), 1);
        assert_eq!(c.kinds()[&("Python".to_owned(), "1".to_owned())], 1);
    }
}
