//! OpenShift `image.openshift.io/v1` Image objects (cluster-scoped): get and list.

use std::collections::BTreeMap;

use axum::response::Response;
use serde_json::{json, Value};

use super::paging::{page, ListQuery};
use super::{auth, json_response, list_item, ApiError, Ctx};

const GROUP: &str = "image.openshift.io";
const API_VERSION: &str = "image.openshift.io/v1";

/// An OpenShift Image object shaped like `oc get image <name> -o json`: `dockerImageReference`,
/// `dockerImageLayers` (names = `layers`) and `dockerImageMetadata` (a docker 1.0 `DockerImage`
/// whose `ContainerConfig` and `Config` carry `entrypoint` / `cmd`; empty slices are omitted).
pub fn openshift_image(
    name: &str,
    reference: &str,
    layers: &[&str],
    entrypoint: &[&str],
    cmd: &[&str],
) -> Value {
    let mut config = json!({});
    if !entrypoint.is_empty() {
        config["Entrypoint"] = json!(entrypoint);
    }
    if !cmd.is_empty() {
        config["Cmd"] = json!(cmd);
    }
    let layers: Vec<Value> = layers
        .iter()
        .map(|l| {
            json!({
                "name": l,
                "size": 1024,
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
            })
        })
        .collect();
    json!({
        "kind": "Image",
        "apiVersion": API_VERSION,
        "metadata": {
            "name": name,
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "annotations": { "image.openshift.io/dockerLayersOrder": "ascending" },
        },
        "dockerImageReference": reference,
        "dockerImageMetadata": {
            "kind": "DockerImage",
            "apiVersion": "1.0",
            "Id": name,
            "Created": "2025-01-01T00:00:00Z",
            "ContainerConfig": config.clone(),
            "Config": config,
            "Architecture": "amd64",
            "Size": 1024 * layers.len(),
        },
        "dockerImageMetadataVersion": "1.0",
        "dockerImageLayers": layers,
        "dockerImageManifestMediaType": "application/vnd.docker.distribution.manifest.v2+json",
    })
}

/// Keys images by `metadata.name`, adding the fields a stored object always has.
pub(crate) fn index(images: Vec<Value>, rv: u64) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    for mut image in images {
        let Some(name) = image
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            tracing::warn!("testkit apiserver: ignoring an image without metadata.name");
            continue;
        };
        if let Some(obj) = image.as_object_mut() {
            obj.insert("kind".into(), json!("Image"));
            obj.insert("apiVersion".into(), json!(API_VERSION));
        }
        if let Some(meta) = image.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.entry("resourceVersion")
                .or_insert_with(|| json!(rv.to_string()));
            meta.entry("uid")
                .or_insert_with(|| json!(auth::uid_for(&format!("image/{name}"))));
        }
        map.insert(name, image);
    }
    map
}

fn labels(image: &Value) -> BTreeMap<String, String> {
    image
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) async fn list(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let q = ListQuery::parse(&ctx.query, &["metadata.name"])?;
    let delay = ctx.shared.lock().list_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let data = ctx.shared.lock();
    // Checked by the router, but the group may have been removed during the delay.
    let Some(images) = data.images.as_ref() else {
        return Err(ApiError::no_route());
    };
    let p = page(&data, images, "", &q, |image| {
        q.labels.matches(&labels(image))
            && q.fields.matches(|f| {
                image
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .filter(|_| f == "metadata.name")
                    .unwrap_or("")
                    .to_string()
            })
    })?;
    let items: Vec<Value> = p.items.into_iter().cloned().map(list_item).collect();
    let mut metadata = json!({ "resourceVersion": p.resource_version });
    if !p.continue_.is_empty() {
        metadata["continue"] = json!(p.continue_);
    }
    if let Some(n) = p.remaining {
        metadata["remainingItemCount"] = json!(n);
    }
    Ok(json_response(
        200,
        &json!({ "kind": "ImageList", "apiVersion": API_VERSION, "metadata": metadata, "items": items }),
    ))
}

pub(crate) fn get(ctx: &Ctx<'_>, name: &str) -> Result<Response, ApiError> {
    let data = ctx.shared.lock();
    let image = data
        .images
        .as_ref()
        .ok_or_else(ApiError::no_route)?
        .get(name)
        .ok_or_else(|| ApiError::not_found(GROUP, "images", name))?;
    Ok(json_response(200, image))
}
