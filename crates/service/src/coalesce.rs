//! Single-flight: concurrent callers asking for the same key share one future.
//!
//! The shared future is held only by its callers (the map keeps a weak reference), so when
//! every caller has gone — a client disconnected, a request hit its deadline — the work itself
//! is dropped: for a scan that closes the scanner connection, which cancels it there.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared, WeakShared};

type Slot<V> = (u64, WeakShared<BoxFuture<'static, V>>);

/// Above this many entries, stale ones (work nobody waits for any more) are swept on insert.
const SWEEP_THRESHOLD: usize = 256;

pub struct Coalescer<K, V: Clone> {
    inflight: Arc<Mutex<HashMap<K, Slot<V>>>>,
    next_generation: Mutex<u64>,
}

impl<K, V> Default for Coalescer<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Coalescer {
            inflight: Arc::new(Mutex::new(HashMap::new())),
            next_generation: Mutex::new(0),
        }
    }
}

/// Whether [`Coalescer::join`] started the work or joined work already under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    Started,
    Shared,
}

impl<K, V> Coalescer<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The in-flight future for `key`, or a new one made by `make` when none is running.
    pub fn join<F, Fut>(&self, key: K, make: F) -> (Shared<BoxFuture<'static, V>>, Joined)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let mut map = lock(&self.inflight);
        if let Some((_, weak)) = map.get(&key) {
            if let Some(strong) = weak.upgrade() {
                return (strong, Joined::Shared);
            }
        }
        let generation = {
            let mut g = lock(&self.next_generation);
            *g += 1;
            *g
        };
        let work = make();
        let registry = Arc::clone(&self.inflight);
        let k = key.clone();
        let fut: BoxFuture<'static, V> = async move {
            let out = work.await;
            // Done: later callers must start afresh (and will usually hit the cache).
            let mut map = lock(&registry);
            if map.get(&k).is_some_and(|(g, _)| *g == generation) {
                map.remove(&k);
            }
            out
        }
        .boxed();
        let shared = fut.shared();
        if map.len() >= SWEEP_THRESHOLD {
            map.retain(|_, (_, weak)| weak.upgrade().is_some());
        }
        if let Some(weak) = shared.downgrade() {
            map.insert(key, (generation, weak));
        }
        (shared, Joined::Started)
    }

    /// Keys with work under way (some caller still waiting).
    pub fn in_flight(&self) -> usize {
        lock(&self.inflight)
            .values()
            .filter(|(_, w)| w.upgrade().is_some())
            .count()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves the map consistent (single inserts/removes).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_callers_share_one_run() {
        let c: Coalescer<&'static str, usize> = Coalescer::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let mut futs = Vec::new();
        for i in 0..10 {
            let runs = Arc::clone(&runs);
            let (f, joined) = c.join("k", move || async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                runs.fetch_add(1, Ordering::SeqCst) + 100
            });
            assert_eq!(joined == Joined::Started, i == 0);
            futs.push(f);
        }
        let outs = futures::future::join_all(futs).await;
        assert!(outs.iter().all(|&o| o == 100));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(c.in_flight(), 0);
        // Finished work is not reused: the next caller starts again.
        let runs2 = Arc::clone(&runs);
        let (f, joined) = c.join(
            "k",
            move || async move { runs2.fetch_add(1, Ordering::SeqCst) },
        );
        assert_eq!(joined, Joined::Started);
        assert_eq!(f.await, 1);
    }

    #[tokio::test]
    async fn work_is_dropped_when_every_caller_leaves() {
        struct Guard(Arc<AtomicUsize>);
        impl Drop for Guard {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let c: Coalescer<u32, ()> = Coalescer::default();
        let dropped = Arc::new(AtomicUsize::new(0));
        let d = Arc::clone(&dropped);
        let (f1, _) = c.join(1, move || async move {
            let _g = Guard(d);
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        let (f2, joined) = c.join(1, || async {});
        assert_eq!(joined, Joined::Shared);
        // Both callers poll for a while, then give up.
        let _ = tokio::time::timeout(Duration::from_millis(20), f1).await;
        assert_eq!(dropped.load(Ordering::SeqCst), 0, "one caller still waits");
        assert_eq!(c.in_flight(), 1);
        let _ = tokio::time::timeout(Duration::from_millis(20), f2).await;
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            1,
            "nobody waits: work dropped"
        );
        assert_eq!(c.in_flight(), 0);
        // A new caller starts new work.
        let (_f3, joined) = c.join(1, || async {});
        assert_eq!(joined, Joined::Started);
    }
}
