//! Who may call the API.
//!
//! - `kubernetes`: the bearer token is checked with a TokenReview; the caller is allowed if
//!   its user name is in `--allow-user`, otherwise if a SubjectAccessReview for the
//!   non-resource URL `/gather_runtime_info` with the lowercase HTTP method as verb allows it.
//!   That is the rule kube-rbac-proxy applied in front of the reference exporter. Answers are
//!   cached (keyed by a SHA-256 of the token, never the token itself) and concurrent identical
//!   reviews are coalesced, so a burst of requests costs one review.
//! - `token-file=PATH`: one static token, compared in constant time; the file is re-read when
//!   it changes (stat on each request, read only when mtime/size/inode moved).
//! - `none`: everyone is let in (only with an explicit flag; a warning is logged at start).

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http::HeaderMap;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::Api;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::coalesce::Coalescer;

/// The only URL callers are authorised for.
pub const API_PATH: &str = "/gather_runtime_info";
/// Longest bearer token considered (service-account JWTs are ~1–2 KiB).
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Longest token file read.
const MAX_TOKEN_FILE: u64 = 64 * 1024;
/// Entries kept per review cache.
const CACHE_ENTRIES: usize = 4096;
/// Bound on one TokenReview / SubjectAccessReview round trip.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed {
        user: String,
    },
    /// 401: no token, or a token nobody recognises.
    Unauthenticated {
        reason: String,
    },
    /// 403: a known caller without permission.
    Forbidden {
        user: String,
    },
    /// 503: the review could not be made (API server unreachable, ...).
    Unavailable {
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("--auth none requires --insecure-allow-unauthenticated")]
    NoneNotAllowed,
    #[error("token file {path}: {reason}")]
    TokenFile { path: PathBuf, reason: String },
    #[error("Kubernetes client configuration: {0}")]
    Kube(String),
}

pub enum Authenticator {
    Kubernetes(Box<KubeAuth>),
    TokenFile(TokenFileAuth),
    None,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Authenticator::Kubernetes(_) => "Authenticator::Kubernetes",
            Authenticator::TokenFile(_) => "Authenticator::TokenFile",
            Authenticator::None => "Authenticator::None",
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header, if well formed.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty() && token.len() <= MAX_TOKEN_LEN).then_some(token)
}

impl Authenticator {
    /// Decide for a request with these headers, method and path. Paths other than
    /// [`API_PATH`] only need an authenticated caller (they answer 404 anyway).
    pub async fn check(&self, headers: &HeaderMap, method: &http::Method, path: &str) -> Decision {
        match self {
            Authenticator::None => Decision::Allowed {
                user: "system:anonymous".to_owned(),
            },
            Authenticator::TokenFile(t) => match bearer_token(headers) {
                None => missing_token(),
                Some(token) => t.check(token).await,
            },
            Authenticator::Kubernetes(k) => match bearer_token(headers) {
                None => missing_token(),
                Some(token) => {
                    let verb = method.as_str().to_ascii_lowercase();
                    k.check(token, &verb, path == API_PATH).await
                }
            },
        }
    }
}

fn missing_token() -> Decision {
    Decision::Unauthenticated {
        reason: "missing bearer token".to_owned(),
    }
}

fn digest(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(Sha256::digest(token.as_bytes()).as_slice());
    out
}

// ---------------------------------------------------------------------------------------------
// kubernetes

#[derive(Debug, Clone)]
enum Authn {
    User(Arc<UserInfo>),
    Rejected(String),
}

/// A small TTL map; when full, expired entries go first, then everything (it is only a cache).
struct TtlCache<K, V> {
    ttl: Duration,
    map: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + std::hash::Hash, V: Clone> TtlCache<K, V> {
    fn new(ttl: Duration) -> Self {
        TtlCache {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, k: &K) -> Option<V> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(k)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(v, _)| v.clone())
    }

    fn put(&self, k: K, v: V) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CACHE_ENTRIES {
            let ttl = self.ttl;
            map.retain(|_, (_, at)| at.elapsed() < ttl);
            if map.len() >= CACHE_ENTRIES {
                map.clear();
            }
        }
        map.insert(k, (v, Instant::now()));
    }
}

pub struct KubeAuth {
    client: kube::Client,
    allow_users: HashSet<String>,
    // Shared with the in-flight review futures, which fill them before they resolve: a request
    // arriving just after a review finished then finds the answer instead of starting another.
    authn_cache: Arc<TtlCache<[u8; 32], Authn>>,
    authz_cache: Arc<TtlCache<([u8; 32], String), bool>>,
    authn_inflight: Coalescer<[u8; 32], Result<Authn, String>>,
    authz_inflight: Coalescer<([u8; 32], String), Result<bool, String>>,
}

impl KubeAuth {
    pub fn new(client: kube::Client, allow_users: &[String], ttl: Duration) -> Self {
        KubeAuth {
            client,
            allow_users: allow_users
                .iter()
                .map(|u| u.trim().to_owned())
                .filter(|u| !u.is_empty())
                .collect(),
            authn_cache: Arc::new(TtlCache::new(ttl)),
            authz_cache: Arc::new(TtlCache::new(ttl)),
            authn_inflight: Coalescer::default(),
            authz_inflight: Coalescer::default(),
        }
    }

    async fn check(&self, token: &str, verb: &str, authorize: bool) -> Decision {
        let key = digest(token);
        let authn = match self.authn_cache.get(&key) {
            Some(a) => a,
            None => {
                let client = self.client.clone();
                let token = token.to_owned();
                let cache = Arc::clone(&self.authn_cache);
                let (fut, _) = self.authn_inflight.join(key, move || async move {
                    // Checked again: a review that ended since our miss filled the cache
                    // before it resolved, so a new one is only started when none did.
                    if let Some(a) = cache.get(&key) {
                        return Ok(a);
                    }
                    let answer = token_review(client, token).await;
                    if let Ok(a) = &answer {
                        cache.put(key, a.clone());
                    }
                    answer
                });
                match fut.await {
                    Ok(a) => a,
                    Err(reason) => return Decision::Unavailable { reason },
                }
            }
        };
        let user = match authn {
            Authn::Rejected(reason) => return Decision::Unauthenticated { reason },
            Authn::User(u) => u,
        };
        let name = user.username.clone().unwrap_or_default();
        if !authorize || self.allow_users.contains(&name) {
            return Decision::Allowed { user: name };
        }
        let zkey = (key, verb.to_owned());
        let allowed = match self.authz_cache.get(&zkey) {
            Some(a) => a,
            None => {
                let client = self.client.clone();
                let verb = verb.to_owned();
                let cache = Arc::clone(&self.authz_cache);
                let key = zkey.clone();
                let (fut, _) = self.authz_inflight.join(zkey, move || async move {
                    if let Some(a) = cache.get(&key) {
                        return Ok(a);
                    }
                    let answer = subject_access_review(client, user, verb).await;
                    if let Ok(a) = &answer {
                        cache.put(key, *a);
                    }
                    answer
                });
                match fut.await {
                    Ok(a) => a,
                    Err(reason) => return Decision::Unavailable { reason },
                }
            }
        };
        if allowed {
            Decision::Allowed { user: name }
        } else {
            Decision::Forbidden { user: name }
        }
    }
}

async fn token_review(client: kube::Client, token: String) -> Result<Authn, String> {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token,
            audiences: None,
        },
        ..Default::default()
    };
    let api: Api<TokenReview> = Api::all(client);
    let answer = tokio::time::timeout(REVIEW_TIMEOUT, api.create(&PostParams::default(), &review))
        .await
        .map_err(|_| format!("TokenReview timed out after {REVIEW_TIMEOUT:?}"))?
        .map_err(|e| format!("TokenReview failed: {e}"))?;
    let status = answer.status.unwrap_or_default();
    match (status.authenticated, status.user) {
        (Some(true), Some(user)) if user.username.as_deref().is_some_and(|u| !u.is_empty()) => {
            Ok(Authn::User(Arc::new(user)))
        }
        _ => Ok(Authn::Rejected("invalid bearer token".to_owned())),
    }
}

async fn subject_access_review(
    client: kube::Client,
    user: Arc<UserInfo>,
    verb: String,
) -> Result<bool, String> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: user.username.clone(),
            groups: user.groups.clone(),
            uid: user.uid.clone(),
            extra: user.extra.clone(),
            non_resource_attributes: Some(NonResourceAttributes {
                path: Some(API_PATH.to_owned()),
                verb: Some(verb),
            }),
            resource_attributes: None,
        },
        ..Default::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client);
    let answer = tokio::time::timeout(REVIEW_TIMEOUT, api.create(&PostParams::default(), &review))
        .await
        .map_err(|_| format!("SubjectAccessReview timed out after {REVIEW_TIMEOUT:?}"))?
        .map_err(|e| format!("SubjectAccessReview failed: {e}"))?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// A Kubernetes client from `--kubeconfig`, or in-cluster / `$KUBECONFIG` when absent.
pub async fn kube_client(kubeconfig: Option<&Path>) -> Result<kube::Client, AuthSetupError> {
    let kube_err = |e: &dyn std::fmt::Display| AuthSetupError::Kube(e.to_string());
    let mut config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| AuthSetupError::Kube(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| kube_err(&e))?
        }
        None => kube::Config::infer().await.map_err(|e| kube_err(&e))?,
    };
    // kube's default read timeout is minutes; a review must not hold a request that long.
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = Some(REVIEW_TIMEOUT);
    config.write_timeout = Some(REVIEW_TIMEOUT);
    kube::Client::try_from(config).map_err(|e| kube_err(&e))
}

// ---------------------------------------------------------------------------------------------
// token-file

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    ino: u64,
    dev: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    // metadata() follows symlinks, so a Kubernetes `..data` swap shows up as a new inode.
    let m = std::fs::metadata(path)?;
    Ok(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        ino: m.ino(),
        dev: m.dev(),
    })
}

fn read_token_file(path: &Path) -> Result<Option<[u8; 32]>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    file.take(MAX_TOKEN_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    if buf.len() as u64 > MAX_TOKEN_FILE {
        return Err(format!("larger than {MAX_TOKEN_FILE} bytes"));
    }
    let text = String::from_utf8(buf).map_err(|_| "not UTF-8".to_owned())?;
    let token = text.trim();
    Ok((!token.is_empty()).then(|| digest(token)))
}

pub struct TokenFileAuth {
    path: PathBuf,
    /// (file stamp, SHA-256 of the token or None when the file holds no token)
    state: Mutex<(Option<Stamp>, Option<[u8; 32]>)>,
}

impl TokenFileAuth {
    /// Read the file once: a missing or empty file at startup is a configuration error.
    pub fn new(path: &Path) -> Result<Self, AuthSetupError> {
        let err = |reason: String| AuthSetupError::TokenFile {
            path: path.to_owned(),
            reason,
        };
        let st = stamp(path).map_err(|e| err(e.to_string()))?;
        let token = read_token_file(path)
            .map_err(err)?
            .ok_or_else(|| err("the file holds no token".to_owned()))?;
        Ok(TokenFileAuth {
            path: path.to_owned(),
            state: Mutex::new((Some(st), Some(token))),
        })
    }

    /// The current token digest, re-reading the file if it changed. A file that became
    /// unreadable or empty rejects everyone (fail closed) until it is fixed.
    fn current(&self) -> Option<[u8; 32]> {
        let now = stamp(&self.path).ok();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if now.is_some() && state.0 == now {
            return state.1;
        }
        let token = match now {
            None => None,
            Some(_) => match read_token_file(&self.path) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "token file unreadable; rejecting every request");
                    None
                }
            },
        };
        if token.is_some() {
            tracing::info!(path = %self.path.display(), "token file reloaded");
        }
        *state = (now, token);
        token
    }

    async fn check(&self, token: &str) -> Decision {
        let presented = digest(token);
        // Comparing digests keeps the comparison constant-time and length-independent.
        match self.current() {
            Some(expected) if bool::from(expected.ct_eq(&presented)) => Decision::Allowed {
                user: "token-file".to_owned(),
            },
            _ => Decision::Unauthenticated {
                reason: "invalid bearer token".to_owned(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token(&headers("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&headers("bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(&headers("Basic abc")), None);
        assert_eq!(bearer_token(&headers("Bearer ")), None);
        assert_eq!(bearer_token(&headers("Bearer")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        assert_eq!(bearer_token(&headers(&long)), None);
    }

    #[tokio::test]
    async fn token_file_is_reloaded_and_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        assert!(TokenFileAuth::new(&path).is_err(), "missing file");
        std::fs::write(&path, "  \n").unwrap();
        assert!(TokenFileAuth::new(&path).is_err(), "empty file");
        std::fs::write(&path, "s3cret\n").unwrap();
        let auth = Authenticator::TokenFile(TokenFileAuth::new(&path).unwrap());
        let get = http::Method::GET;
        let ok = auth.check(&headers("Bearer s3cret"), &get, API_PATH).await;
        assert!(matches!(ok, Decision::Allowed { .. }), "{ok:?}");
        for bad in ["Bearer s3cre", "Bearer s3cret2", "Bearer S3CRET"] {
            let d = auth.check(&headers(bad), &get, API_PATH).await;
            assert!(
                matches!(d, Decision::Unauthenticated { .. }),
                "{bad}: {d:?}"
            );
        }
        let d = auth.check(&HeaderMap::new(), &get, API_PATH).await;
        assert_eq!(d, missing_token());
        // Rotation the Kubernetes way: a new file, renamed over (new inode).
        let tmp = dir.path().join("token.new");
        std::fs::write(&tmp, "rotated").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let d = auth.check(&headers("Bearer s3cret"), &get, API_PATH).await;
        assert!(matches!(d, Decision::Unauthenticated { .. }), "{d:?}");
        let d = auth.check(&headers("Bearer rotated"), &get, API_PATH).await;
        assert!(matches!(d, Decision::Allowed { .. }), "{d:?}");
        std::fs::remove_file(&path).unwrap();
        let d = auth.check(&headers("Bearer rotated"), &get, API_PATH).await;
        assert!(matches!(d, Decision::Unauthenticated { .. }), "{d:?}");
    }
}
