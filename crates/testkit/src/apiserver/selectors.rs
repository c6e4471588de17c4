//! Label and field selectors with the syntax and semantics of apimachinery's `labels.Parse` and
//! `fields.ParseSelector`.

use std::collections::BTreeMap;

use super::ApiError;

/// A parsed `labelSelector`: every requirement must hold (comma = AND).
#[derive(Debug, Default)]
pub(crate) struct LabelSelector {
    reqs: Vec<LabelReq>,
}

#[derive(Debug)]
enum LabelReq {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
    Gt(String, i64),
    Lt(String, i64),
}

impl LabelSelector {
    pub(crate) fn parse(s: &str) -> Result<LabelSelector, ApiError> {
        let mut reqs = Vec::new();
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                if s.trim().is_empty() {
                    continue;
                }
                return Err(label_err(s, "found '', expected: identifier"));
            }
            reqs.push(parse_req(part).map_err(|m| label_err(s, &m))?);
        }
        Ok(LabelSelector { reqs })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    pub(crate) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.reqs.iter().all(|r| match r {
            LabelReq::Equals(k, v) => labels.get(k) == Some(v),
            // Like Kubernetes: `!=` and `notin` also match objects without the label.
            LabelReq::NotEquals(k, v) => labels.get(k) != Some(v),
            LabelReq::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            LabelReq::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            LabelReq::Exists(k) => labels.contains_key(k),
            LabelReq::DoesNotExist(k) => !labels.contains_key(k),
            LabelReq::Gt(k, n) => labels
                .get(k)
                .and_then(|l| l.parse::<i64>().ok())
                .is_some_and(|l| l > *n),
            LabelReq::Lt(k, n) => labels
                .get(k)
                .and_then(|l| l.parse::<i64>().ok())
                .is_some_and(|l| l < *n),
        })
    }
}

fn label_err(selector: &str, msg: &str) -> ApiError {
    ApiError::bad_request(format!(
        "unable to parse requirement: {msg} (selector {selector:?})"
    ))
}

/// Splits at commas that are not inside `( )`.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn parse_req(part: &str) -> Result<LabelReq, String> {
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        check_key(key)?;
        return Ok(LabelReq::DoesNotExist(key.to_string()));
    }
    if let Some(open) = part.find('(') {
        let head = part[..open].trim();
        let Some(body) = part[open + 1..].trim_end().strip_suffix(')') else {
            return Err(format!("found '{}', expected: ')'", &part[open..]));
        };
        let mut words = head.split_whitespace();
        let (Some(key), Some(op), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!("found '{head}', expected: key in|notin (values)"));
        };
        check_key(key)?;
        let values = body
            .split(',')
            .map(|v| {
                let v = v.trim();
                check_value(v).map(|()| v.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        return match op {
            "in" => Ok(LabelReq::In(key.to_string(), values)),
            "notin" => Ok(LabelReq::NotIn(key.to_string(), values)),
            other => Err(format!(
                "found '{other}', expected: in, notin, =, ==, !=, gt, lt"
            )),
        };
    }
    for (op, len) in [("!=", 2), ("==", 2), ("=", 1), (">", 1), ("<", 1)] {
        if let Some(at) = part.find(op) {
            let key = part[..at].trim();
            let value = part[at + len..].trim();
            check_key(key)?;
            return match op {
                ">" | "<" => {
                    let n = value.parse::<i64>().map_err(|_| {
                        format!(
                            "for 'Gt', 'Lt' operators, the value must be an integer, got {value:?}"
                        )
                    })?;
                    Ok(if op == ">" {
                        LabelReq::Gt(key.to_string(), n)
                    } else {
                        LabelReq::Lt(key.to_string(), n)
                    })
                }
                _ => {
                    check_value(value)?;
                    Ok(if op == "!=" {
                        LabelReq::NotEquals(key.to_string(), value.to_string())
                    } else {
                        LabelReq::Equals(key.to_string(), value.to_string())
                    })
                }
            };
        }
    }
    check_key(part)?;
    Ok(LabelReq::Exists(part.to_string()))
}

/// Qualified name: optional DNS-subdomain prefix and '/', then a 1–63 character name.
fn check_key(key: &str) -> Result<(), String> {
    let name = match key.rsplit_once('/') {
        Some((prefix, name)) => {
            if prefix.is_empty()
                || prefix.len() > 253
                || !prefix
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            {
                return Err(format!("invalid label key {key:?}: bad prefix"));
            }
            name
        }
        None => key,
    };
    if name.is_empty() || name.len() > 63 || !is_label_token(name) {
        return Err(format!("invalid label key {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
    }
    Ok(())
}

fn check_value(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Ok(());
    }
    if v.len() > 63 || !is_label_token(v) {
        return Err(format!("invalid label value: {v:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
    }
    Ok(())
}

fn is_label_token(s: &str) -> bool {
    let b = s.as_bytes();
    b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A parsed `fieldSelector`: `field=value`, `field==value`, `field!=value`, comma = AND.
#[derive(Debug, Default)]
pub(crate) struct FieldSelector {
    reqs: Vec<(String, bool, String)>, // (field, equal?, value)
}

impl FieldSelector {
    /// Parses and checks every field against `supported` (the resource's field labels); an
    /// unknown field is a 400 like the real server's "field label not supported".
    pub(crate) fn parse(s: &str, supported: &[&str]) -> Result<FieldSelector, ApiError> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector { reqs });
        }
        for part in split_unescaped(s, ',') {
            let (field, eq, value) = if let Some((f, v)) = split_op(&part, "!=") {
                (f, false, v)
            } else if let Some((f, v)) = split_op(&part, "==") {
                (f, true, v)
            } else if let Some((f, v)) = split_op(&part, "=") {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let field = field.trim().to_string();
            if !supported.contains(&field.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            reqs.push((field, eq, unescape(value.trim())));
        }
        Ok(FieldSelector { reqs })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// `value_of(field)` gives the object's value ("" when unset, like Kubernetes).
    pub(crate) fn matches(&self, value_of: impl Fn(&str) -> String) -> bool {
        self.reqs
            .iter()
            .all(|(field, eq, value)| (value_of(field) == *value) == *eq)
    }
}

/// Splits on `sep` not preceded by a backslash; keeps escapes (unescaped later).
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            if let Some(p) = parts.last_mut() {
                p.push('\\');
                p.push(c);
            }
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(String::new());
        } else if let Some(p) = parts.last_mut() {
            p.push(c);
        }
    }
    parts
}

/// Splits at the first unescaped occurrence of `op`.
fn split_op<'a>(s: &'a str, op: &str) -> Option<(&'a str, &'a str)> {
    let mut from = 0;
    while let Some(at) = s[from..].find(op).map(|i| i + from) {
        let backslashes = s[..at].chars().rev().take_while(|c| *c == '\\').count();
        if backslashes % 2 == 0 {
            return Some((&s[..at], &s[at + op.len()..]));
        }
        from = at + op.len();
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut escaped = false;
    for c in s.chars() {
        if escaped || c != '\\' {
            out.push(c);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selector_semantics() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "5")]);
        let ok = |s: &str| LabelSelector::parse(s).unwrap().matches(&l);
        assert!(ok(""));
        assert!(ok("app=web"));
        assert!(ok("app==web"));
        assert!(!ok("app!=web"));
        assert!(ok("missing!=x"));
        assert!(ok("app in (web, db)"));
        assert!(!ok("app notin (web,db)"));
        assert!(ok("missing notin (web)"));
        assert!(ok("app,tier=front"));
        assert!(!ok("app,!tier"));
        assert!(ok("!missing"));
        assert!(ok("n>4"));
        assert!(!ok("n<5"));
        assert!(ok("app.kubernetes.io/name!=x,tier in (front)"));
        assert!(LabelSelector::parse("app=we b").is_err());
        assert!(LabelSelector::parse("app in (a").is_err());
        assert!(LabelSelector::parse("a,,b").is_err());
        assert!(LabelSelector::parse("app foo (a)").is_err());
    }

    #[test]
    fn field_selector_semantics() {
        let supported = ["spec.nodeName", "status.phase"];
        let value = |f: &str| match f {
            "spec.nodeName" => "n1".to_string(),
            _ => String::new(),
        };
        let ok = |s: &str| FieldSelector::parse(s, &supported).unwrap().matches(value);
        assert!(ok("spec.nodeName=n1"));
        assert!(ok("spec.nodeName==n1,status.phase="));
        assert!(!ok("spec.nodeName!=n1"));
        assert!(ok("status.phase!=Running"));
        let err = FieldSelector::parse("spec.foo=x", &supported).unwrap_err();
        assert_eq!(err.code, 400);
        assert_eq!(err.message, "field label not supported: spec.foo");
        assert!(FieldSelector::parse("spec.nodeName", &supported).is_err());
        assert!(ok(r"spec.nodeName!=a\,b"));
    }
}
