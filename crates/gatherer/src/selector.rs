//! Kubernetes label selectors, evaluated locally for `--pods-file` (the API server
//! evaluates them itself otherwise). Supports `k=v`, `k==v`, `k!=v`, `k`, `!k`,
//! `k in (a,b)` and `k notin (a,b)`, comma-separated.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector {selector:?}: {reason}")]
pub struct SelectorError {
    selector: String,
    reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

/// Splits at commas that are not inside parentheses.
fn split_top_level(s: &str) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return None;
                }
            }
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return None;
    }
    parts.push(&s[start..]);
    Some(parts)
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl LabelSelector {
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let err = |reason: &str| SelectorError {
            selector: selector.to_owned(),
            reason: reason.to_owned(),
        };
        let mut requirements = Vec::new();
        if selector.trim().is_empty() {
            return Ok(LabelSelector { requirements });
        }
        let parts = split_top_level(selector).ok_or_else(|| err("unbalanced parentheses"))?;
        for part in parts {
            let part = part.trim();
            if part.is_empty() {
                return Err(err("empty requirement"));
            }
            let req = if let Some(k) = part.strip_prefix('!') {
                Requirement::NotExists(k.trim().to_owned())
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement::Equals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement::Equals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some(req) = Self::parse_set(part) {
                req.map_err(|r| err(&r))?
            } else {
                Requirement::Exists(part.to_owned())
            };
            let (key, values): (&str, Vec<&str>) = match &req {
                Requirement::Equals(k, v) | Requirement::NotEquals(k, v) => (k, vec![v.as_str()]),
                Requirement::Exists(k) | Requirement::NotExists(k) => (k, vec![]),
                Requirement::In(k, vs) | Requirement::NotIn(k, vs) => {
                    (k, vs.iter().map(String::as_str).collect())
                }
            };
            if !valid_key(key) {
                return Err(err(&format!("invalid key {key:?}")));
            }
            if let Some(v) = values.iter().find(|v| !valid_value(v)) {
                return Err(err(&format!("invalid value {v:?}")));
            }
            requirements.push(req);
        }
        Ok(LabelSelector { requirements })
    }

    /// `key in (a, b)` / `key notin (a, b)`; `None` when `part` is not a set requirement.
    fn parse_set(part: &str) -> Option<Result<Requirement, String>> {
        let open = part.find('(')?;
        let head = part[..open].trim();
        let (key, negated) = if let Some(k) = head.strip_suffix(" notin") {
            (k, true)
        } else if let Some(k) = head.strip_suffix(" in") {
            (k, false)
        } else {
            return Some(Err(format!("expected `in` or `notin` in {part:?}")));
        };
        let Some(inner) = part[open + 1..].strip_suffix(')') else {
            return Some(Err(format!("missing `)` in {part:?}")));
        };
        let values: Vec<String> = inner.split(',').map(|v| v.trim().to_owned()).collect();
        let key = key.trim().to_owned();
        Some(Ok(if negated {
            Requirement::NotIn(key, values)
        } else {
            Requirement::In(key, values)
        }))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn equality_and_existence() {
        let l = labels(&[
            ("app.kubernetes.io/name", "insights-runtime-extractor"),
            ("tier", "x"),
        ]);
        let yes = [
            "",
            "app.kubernetes.io/name=insights-runtime-extractor",
            "app.kubernetes.io/name == insights-runtime-extractor",
            "tier,app.kubernetes.io/name=insights-runtime-extractor",
            "tier!=y",
            "!missing",
            "tier in (a, x)",
            "tier notin (a,b)",
            "missing notin (a)",
        ];
        for s in yes {
            assert!(LabelSelector::parse(s).unwrap().matches(&l), "{s:?}");
        }
        let no = [
            "app.kubernetes.io/name=other",
            "missing",
            "!tier",
            "tier!=x",
            "tier in (a,b)",
            "tier notin (x)",
            "tier=x,missing=y",
        ];
        for s in no {
            assert!(!LabelSelector::parse(s).unwrap().matches(&l), "{s:?}");
        }
    }

    #[test]
    fn malformed_selectors_are_rejected() {
        for s in ["a=b,", "a in (b", "a foo (b)", "a=b c", "=b", "a b"] {
            let e = LabelSelector::parse(s).unwrap_err();
            assert!(
                e.to_string().contains("invalid label selector"),
                "{s:?}: {e}"
            );
        }
    }
}
