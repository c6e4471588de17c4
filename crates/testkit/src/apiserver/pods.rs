//! `GET /api/v1/pods`, `/api/v1/namespaces/{ns}/pods`, `/api/v1/namespaces/{ns}/pods/{name}`.

use axum::response::Response;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use super::paging::{page, ListQuery};
use super::{json_response, list_item, ApiError, Ctx};

/// The pod field labels kube-apiserver accepts in `fieldSelector` (pkg/registry/core/pod).
const POD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];

fn field_value(pod: &Pod, field: &str) -> String {
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let s = |v: Option<&String>| v.cloned().unwrap_or_default();
    match field {
        "metadata.name" => s(pod.metadata.name.as_ref()),
        "metadata.namespace" => s(pod.metadata.namespace.as_ref()),
        "spec.nodeName" => s(spec.and_then(|p| p.node_name.as_ref())),
        "spec.restartPolicy" => s(spec.and_then(|p| p.restart_policy.as_ref())),
        "spec.schedulerName" => s(spec.and_then(|p| p.scheduler_name.as_ref())),
        "spec.serviceAccountName" => s(spec.and_then(|p| p.service_account_name.as_ref())),
        "spec.hostNetwork" => spec
            .and_then(|p| p.host_network)
            .unwrap_or(false)
            .to_string(),
        "status.phase" => s(status.and_then(|p| p.phase.as_ref())),
        "status.podIP" => s(status.and_then(|p| p.pod_ip.as_ref())),
        "status.nominatedNodeName" => s(status.and_then(|p| p.nominated_node_name.as_ref())),
        _ => String::new(),
    }
}

pub(crate) async fn list(ctx: &Ctx<'_>, namespace: Option<&str>) -> Result<Response, ApiError> {
    let q = ListQuery::parse(&ctx.query, POD_FIELDS)?;
    let delay = ctx.shared.lock().list_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let data = ctx.shared.lock();
    let prefix = namespace.map(|ns| format!("{ns}/")).unwrap_or_default();
    let no_labels = std::collections::BTreeMap::new();
    let p = page(&data, &data.pods, &prefix, &q, |pod| {
        q.labels
            .matches(pod.metadata.labels.as_ref().unwrap_or(&no_labels))
            && q.fields.matches(|f| field_value(pod, f))
    })?;
    let items: Vec<Value> = p
        .items
        .into_iter()
        .map(|pod| list_item(serde_json::to_value(pod).unwrap_or(Value::Null)))
        .collect();
    let mut metadata = json!({ "resourceVersion": p.resource_version });
    if !p.continue_.is_empty() {
        metadata["continue"] = json!(p.continue_);
    }
    if let Some(n) = p.remaining {
        metadata["remainingItemCount"] = json!(n);
    }
    Ok(json_response(
        200,
        &json!({ "kind": "PodList", "apiVersion": "v1", "metadata": metadata, "items": items }),
    ))
}

pub(crate) fn get(ctx: &Ctx<'_>, namespace: &str, name: &str) -> Result<Response, ApiError> {
    let data = ctx.shared.lock();
    let pod = data
        .pods
        .get(&format!("{namespace}/{name}"))
        .ok_or_else(|| ApiError::not_found("", "pods", name))?;
    let body = serde_json::to_value(pod).unwrap_or(Value::Null);
    Ok(json_response(200, &body))
}
