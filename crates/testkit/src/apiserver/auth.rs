//! Authentication (client certificate or bearer token), TokenReview and SubjectAccessReview.

use std::hash::{Hash, Hasher};

use axum::response::Response;
use axum_server::tls::TlsInfo;
use http::HeaderMap;
use k8s_openapi::api::authentication::v1::TokenReview;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use serde_json::{json, Value};

use super::{json_response, ApiError, Ctx, Data};

const AUTHENTICATED: &str = "system:authenticated";

/// An authenticated user as the API server sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub username: String,
    pub uid: String,
    /// Includes `system:authenticated`.
    pub groups: Vec<String>,
}

impl Identity {
    pub(crate) fn new(username: &str, mut groups: Vec<String>) -> Identity {
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.to_string());
        }
        Identity {
            username: username.to_string(),
            uid: uid_for(&format!("user/{username}")),
            groups,
        }
    }
}

/// A stable UUID-shaped uid derived from `seed` (deterministic across runs).
pub(crate) fn uid_for(seed: &str) -> String {
    let half = |salt: u8| {
        // DefaultHasher::new() uses fixed keys, so this is deterministic.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut h);
        seed.hash(&mut h);
        h.finish()
    };
    let (a, b) = (half(1), half(2));
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

pub(crate) struct NonResourceRule {
    pub(crate) subject: String,
    pub(crate) path: String,
    pub(crate) verbs: Vec<String>,
}

pub(crate) struct ResourceRule {
    pub(crate) subject: String,
    pub(crate) group: String,
    pub(crate) resource: String,
    pub(crate) verbs: Vec<String>,
}

/// Client certificate first, then bearer token: the order of kube-apiserver's union
/// authenticator. The certificate chain was already verified against the CA by rustls.
pub(crate) fn authenticate(
    data: &Data,
    headers: &HeaderMap,
    tls: Option<&TlsInfo>,
) -> Option<Identity> {
    if let Some(der) = tls.and_then(|t| t.peer_certificates.first()) {
        if let Some(identity) = identity_from_cert(der) {
            return Some(identity);
        }
    }
    let value = headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return None;
    }
    data.users.get(token).cloned()
}

fn identity_from_cert(der: &[u8]) -> Option<Identity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let cn = subject.iter_common_name().next()?.as_str().ok()?;
    if cn.is_empty() {
        return None;
    }
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string)
        .collect();
    Some(Identity::new(cn, groups))
}

fn parse_body<T: serde::de::DeserializeOwned>(ctx: &Ctx<'_>) -> Result<(T, Value), ApiError> {
    let raw: Value = serde_json::from_slice(&ctx.body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    let typed = serde_json::from_value(raw.clone())
        .map_err(|e| ApiError::bad_request(format!("decoding the request body: {e}")))?;
    Ok((typed, raw))
}

fn review_response(raw: &Value, kind: &str, api_version: &str, status: Value) -> Response {
    json_response(
        201,
        &json!({
            "kind": kind,
            "apiVersion": api_version,
            "metadata": { "creationTimestamp": null },
            "spec": raw.get("spec").cloned().unwrap_or_else(|| json!({})),
            "status": status,
        }),
    )
}

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`: answers from the `add_user` table.
pub(crate) fn token_review(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let (review, raw): (TokenReview, Value) = parse_body(ctx)?;
    let token = review.spec.token;
    if token.is_empty() {
        return Err(ApiError::bad_request(
            "token is required for TokenReview in authentication",
        ));
    }
    let found = ctx.shared.lock().users.get(&token).cloned();
    let status = match found {
        Some(id) => {
            let mut status = json!({
                "authenticated": true,
                "user": { "username": id.username, "uid": id.uid, "groups": id.groups },
            });
            if let Some(aud) = review.spec.audiences.filter(|a| !a.is_empty()) {
                status["audiences"] = json!(aud);
            }
            status
        }
        None => json!({ "user": {}, "error": "invalid bearer token" }),
    };
    Ok(review_response(
        &raw,
        "TokenReview",
        "authentication.k8s.io/v1",
        status,
    ))
}

/// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews` ("who am I", GA since 1.28).
pub(crate) fn self_subject_review(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let id = ctx.identity.as_ref().ok_or_else(ApiError::unauthorized)?;
    Ok(json_response(
        201,
        &json!({
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": { "creationTimestamp": null },
            "status": {
                "userInfo": { "username": id.username, "uid": id.uid, "groups": id.groups },
            },
        }),
    ))
}

fn invalid_sar(field: &str, value: &str, why: &str) -> ApiError {
    ApiError {
        details: Some(json!({
            "group": "authorization.k8s.io",
            "kind": "SubjectAccessReview",
            "causes": [{ "reason": "FieldValueInvalid", "message": format!("Invalid value: {value}: {why}"), "field": field }],
        })),
        ..ApiError::new(
            422,
            "Invalid",
            format!("SubjectAccessReview.authorization.k8s.io \"\" is invalid: {field}: Invalid value: {value}: {why}"),
        )
    }
}

fn verb_matches(verbs: &[String], verb: &str) -> bool {
    verbs.iter().any(|v| v == "*" || v == verb)
}

fn path_matches(rule: &str, path: &str) -> bool {
    match rule.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => rule == path,
    }
}

/// `POST /apis/authorization.k8s.io/v1/subjectaccessreviews`: RBAC-like evaluation of the rules
/// given to `allow_non_resource` / `allow_resource`.
pub(crate) fn subject_access_review(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let (review, raw): (SubjectAccessReview, Value) = parse_body(ctx)?;
    let spec = review.spec;
    let user = spec.user.clone().unwrap_or_default();
    let groups = spec.groups.clone().unwrap_or_default();
    if user.is_empty() && groups.is_empty() {
        return Err(invalid_sar(
            "spec.user",
            "\"\"",
            "at least one of user or group must be specified",
        ));
    }
    let matched = |subject: &str| -> Option<String> {
        if subject == user {
            Some(format!("User {subject:?}"))
        } else if groups.iter().any(|g| g == subject) {
            Some(format!("Group {subject:?}"))
        } else {
            None
        }
    };
    let data = ctx.shared.lock();
    let hit = match (&spec.resource_attributes, &spec.non_resource_attributes) {
        (Some(_), Some(_)) => {
            return Err(invalid_sar(
                "spec.nonResourceAttributes",
                "{...}",
                "cannot be specified in combination with resourceAttributes",
            ))
        }
        (None, None) => {
            return Err(invalid_sar(
                "spec.resourceAttributes",
                "null",
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            ))
        }
        (None, Some(nr)) => {
            let path = nr.path.clone().unwrap_or_default();
            let verb = nr.verb.clone().unwrap_or_default();
            data.non_resource_rules
                .iter()
                .enumerate()
                .find_map(|(i, r)| {
                    let ok = path_matches(&r.path, &path) && verb_matches(&r.verbs, &verb);
                    ok.then(|| matched(&r.subject).map(|s| (i, s))).flatten()
                })
        }
        (Some(ra), None) => {
            let group = ra.group.clone().unwrap_or_default();
            let mut resource = ra.resource.clone().unwrap_or_default();
            if let Some(sub) = ra.subresource.as_ref().filter(|s| !s.is_empty()) {
                resource = format!("{resource}/{sub}");
            }
            let verb = ra.verb.clone().unwrap_or_default();
            data.resource_rules.iter().enumerate().find_map(|(i, r)| {
                let ok = (r.group == "*" || r.group == group)
                    && (r.resource == "*" || r.resource == resource)
                    && verb_matches(&r.verbs, &verb);
                ok.then(|| matched(&r.subject).map(|s| (i, s))).flatten()
            })
        }
    };
    // Like RBAC: a denial is "no opinion" and carries no reason.
    let status = match hit {
        Some((i, subject)) => json!({
            "allowed": true,
            "reason": format!("RBAC: allowed by ClusterRoleBinding \"testkit-rule-{i}\" of ClusterRole \"testkit-rule-{i}\" to {subject}"),
        }),
        None => json!({ "allowed": false }),
    };
    Ok(review_response(
        &raw,
        "SubjectAccessReview",
        "authorization.k8s.io/v1",
        status,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_is_stable_and_uuid_shaped() {
        let a = uid_for("user/alice");
        assert_eq!(a, uid_for("user/alice"));
        assert_ne!(a, uid_for("user/bob"));
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }

    #[test]
    fn rbac_style_path_matching() {
        assert!(path_matches("*", "/anything"));
        assert!(path_matches("/gather_runtime_info", "/gather_runtime_info"));
        assert!(!path_matches(
            "/gather_runtime_info",
            "/gather_runtime_info/x"
        ));
        assert!(path_matches("/metrics*", "/metrics/cadvisor"));
        assert!(!path_matches("/metrics*", "/healthz"));
        assert!(verb_matches(&["*".into()], "create"));
        assert!(!verb_matches(&["get".into()], "create"));
    }
}
