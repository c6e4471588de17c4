//! `limit` / `continue` paging as the etcd3 storage layer of kube-apiserver does it.
//!
//! The continue token has the real server's shape: base64url (no padding) of
//! `{"v":"meta.k8s.io/v1","rv":<revision>,"start":"<key after the prefix>\u0000"}`. A token whose
//! revision is at or below the "compacted" revision answers 410 Expired; an undecodable one 400.

use std::collections::BTreeMap;
use std::ops::Bound;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::selectors::{FieldSelector, LabelSelector};
use super::{ApiError, Data};

const TOKEN_VERSION: &str = "meta.k8s.io/v1";

/// The message kube-apiserver gives when the revision of a continue token has been compacted.
pub(crate) const CONTINUE_EXPIRED: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.";

#[derive(Serialize, Deserialize)]
struct Token {
    v: String,
    rv: i64,
    start: String,
}

/// The list query parameters this server understands.
pub(crate) struct ListQuery {
    pub(crate) limit: Option<usize>,
    pub(crate) continue_: Option<String>,
    pub(crate) labels: LabelSelector,
    pub(crate) fields: FieldSelector,
}

impl ListQuery {
    pub(crate) fn parse(
        q: &std::collections::HashMap<String, String>,
        field_labels: &[&str],
    ) -> Result<ListQuery, ApiError> {
        if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
            return Err(ApiError::bad_request(
                "testkit apiserver: watch is not supported",
            ));
        }
        let limit = match q.get("limit").map(|s| s.trim()).filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => {
                let n: i64 = s
                    .parse()
                    .map_err(|_| ApiError::bad_request(format!("limit: invalid value {s:?}")))?;
                // limit <= 0 means "no limit", as in Kubernetes.
                usize::try_from(n).ok().filter(|n| *n > 0)
            }
        };
        let continue_ = q.get("continue").filter(|s| !s.is_empty()).cloned();
        let rv_given = q
            .get("resourceVersion")
            .is_some_and(|s| !s.is_empty() && s != "0");
        if continue_.is_some() && rv_given {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        Ok(ListQuery {
            limit,
            continue_,
            labels: LabelSelector::parse(q.get("labelSelector").map_or("", |s| s.as_str()))?,
            fields: FieldSelector::parse(
                q.get("fieldSelector").map_or("", |s| s.as_str()),
                field_labels,
            )?,
        })
    }

    fn has_selectors(&self) -> bool {
        !self.labels.is_empty() || !self.fields.is_empty()
    }
}

/// One page of a list.
pub(crate) struct Page<'a, T> {
    pub(crate) items: Vec<&'a T>,
    /// `metadata.continue`: "" on the last page.
    pub(crate) continue_: String,
    /// `metadata.remainingItemCount`: only when there are more items and no selectors, like
    /// the real server (it cannot count matches it has not read).
    pub(crate) remaining: Option<i64>,
    /// `metadata.resourceVersion`.
    pub(crate) resource_version: String,
}

/// Lists the keys of `map` that start with `prefix`, in key (etcd) order, applying the query's
/// paging; `matches` applies the selectors.
pub(crate) fn page<'a, T>(
    data: &Data,
    map: &'a BTreeMap<String, T>,
    prefix: &str,
    q: &ListQuery,
    matches: impl Fn(&T) -> bool,
) -> Result<Page<'a, T>, ApiError> {
    let (start, rv) = match &q.continue_ {
        None => (Bound::Included(prefix.to_string()), data.rv),
        Some(token) => {
            let (relative, rv) = decode(token)?;
            if rv <= data.compacted_rv {
                return Err(ApiError::new(410, "Expired", CONTINUE_EXPIRED));
            }
            // The token's start key already ends in "\0", i.e. just after the last key returned.
            (Bound::Included(format!("{prefix}{relative}")), rv)
        }
    };
    let mut keys = map
        .range::<String, _>((start, Bound::Unbounded))
        .take_while(|(k, _)| k.starts_with(prefix));
    let mut items = Vec::new();
    let mut last_key: Option<&String> = None;
    let limit = q.limit.unwrap_or(usize::MAX);
    for (key, value) in keys.by_ref() {
        last_key = Some(key);
        if matches(value) {
            items.push(value);
            if items.len() >= limit {
                break;
            }
        }
    }
    let remaining = keys.count();
    let (continue_, remaining) = match last_key {
        Some(key) if remaining > 0 => {
            let relative = &key[prefix.len()..];
            let count = (!q.has_selectors()).then_some(remaining as i64);
            (encode(relative, rv), count)
        }
        _ => (String::new(), None),
    };
    Ok(Page {
        items,
        continue_,
        remaining,
        resource_version: rv.to_string(),
    })
}

fn encode(last_relative_key: &str, rv: u64) -> String {
    let token = Token {
        v: TOKEN_VERSION.to_string(),
        rv: rv as i64,
        start: format!("{last_relative_key}\u{0}"),
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default())
}

/// Returns (start key relative to the list prefix, revision); errors are the real server's 400s.
fn decode(token: &str) -> Result<(String, u64), ApiError> {
    let invalid = |why: &str| ApiError::bad_request(format!("invalid continue token: {why}"));
    let raw = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|e| invalid(&format!("continue key is not valid: {e}")))?;
    let t: Token = serde_json::from_slice(&raw)
        .map_err(|e| invalid(&format!("continue key is not valid: {e}")))?;
    if t.v != TOKEN_VERSION {
        return Err(invalid(
            "continue key is not valid: server does not recognize this encoded key version",
        ));
    }
    if t.start.is_empty() {
        return Err(invalid(
            "continue key is not valid: encoded start key empty",
        ));
    }
    if t.start.split('/').any(|seg| seg == ".." || seg == ".") || t.start.starts_with('/') {
        return Err(invalid(
            "continue key is not valid: key must not contain relative path segments",
        ));
    }
    if t.rv == 0 {
        return Err(ApiError::bad_request(
            "0 continue resource version is not allowed when using continue",
        ));
    }
    // A negative revision is the real server's "inconsistent continue" marker; treat it as
    // "latest", which is what it means.
    let rv = u64::try_from(t.rv).unwrap_or(u64::MAX);
    Ok((t.start, rv))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Data {
        Data {
            rv: 7,
            ..Data::default()
        }
    }

    fn query(limit: Option<usize>, continue_: Option<String>) -> ListQuery {
        ListQuery {
            limit,
            continue_,
            labels: LabelSelector::default(),
            fields: FieldSelector::default(),
        }
    }

    #[test]
    fn pages_in_key_order_with_prefix() {
        let map: BTreeMap<String, u32> =
            [("a/x", 1), ("a-b/y", 2), ("a/y", 3), ("b/z", 4), ("a/z", 5)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
        let d = data();
        // etcd byte order: "a-b/" sorts before "a/".
        let p = page(&d, &map, "", &query(Some(2), None), |_| true).unwrap();
        assert_eq!(p.items, [&2, &1]);
        assert_eq!(p.remaining, Some(3));
        let p2 = page(&d, &map, "", &query(Some(2), Some(p.continue_)), |_| true).unwrap();
        assert_eq!(p2.items, [&3, &5]);
        let p3 = page(&d, &map, "", &query(Some(2), Some(p2.continue_)), |_| true).unwrap();
        assert_eq!(p3.items, [&4]);
        assert_eq!(p3.continue_, "");
        assert_eq!(p3.remaining, None);

        let ns = page(&d, &map, "a/", &query(Some(2), None), |_| true).unwrap();
        assert_eq!(ns.items, [&1, &3]);
        let ns2 = page(&d, &map, "a/", &query(Some(2), Some(ns.continue_)), |_| {
            true
        })
        .unwrap();
        assert_eq!(ns2.items, [&5]);
        assert_eq!(ns2.continue_, "");
    }

    #[test]
    fn bad_and_expired_tokens() {
        let map: BTreeMap<String, u32> = BTreeMap::new();
        let mut d = data();
        for bad in ["!!", "e30", "eyJ2IjoieCIsInJ2IjoxLCJzdGFydCI6ImEifQ"] {
            let err = page(&d, &map, "", &query(None, Some(bad.into())), |_| true)
                .err()
                .unwrap();
            assert_eq!(err.code, 400, "{bad}");
        }
        let token = encode("a/b", 7);
        d.compacted_rv = 7;
        let err = page(&d, &map, "", &query(None, Some(token)), |_| true)
            .err()
            .unwrap();
        assert_eq!((err.code, err.reason), (410, "Expired"));
    }
}
