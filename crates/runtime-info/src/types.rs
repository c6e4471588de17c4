//! JSON types of `/gather_runtime_info`, field for field as the reference emits them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hash::anonymize;

/// What was found in one container. Every field is omitted from the JSON when empty,
/// exactly as Go's `omitempty` does in the reference exporter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRuntimeInfo {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub os: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub os_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind_implementer: String,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub runtimes: Vec<RuntimeComponent>,
}

/// A framework or application server found in the container (`Quarkus`, `Spring Boot`, …).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RuntimeComponent {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
}

fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

impl ContainerRuntimeInfo {
    /// True when nothing was found (serialises as `{}`; the gatherer drops these).
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Every value hashed with [`anonymize`]; empty values stay empty.
    pub fn anonymized(&self) -> Self {
        self.map_values(anonymize)
    }

    /// The same structure with `f` applied to every value (hashing, sanitising).
    pub fn map_values(&self, f: impl Fn(&str) -> String) -> Self {
        ContainerRuntimeInfo {
            os: f(&self.os),
            os_version: f(&self.os_version),
            kind: f(&self.kind),
            kind_version: f(&self.kind_version),
            kind_implementer: f(&self.kind_implementer),
            runtimes: self
                .runtimes
                .iter()
                .map(|r| RuntimeComponent {
                    name: f(&r.name),
                    version: f(&r.version),
                })
                .collect(),
        }
    }
}

/// namespace → pod name → container ID (`cri-o://…`) → info. `BTreeMap` keeps the keys
/// sorted at every level, as Go's map marshalling does.
pub type NodeRuntimeInfo =
    BTreeMap<String, BTreeMap<String, BTreeMap<String, ContainerRuntimeInfo>>>;

/// Body of `POST /gather_runtime_info`. `containerIds` is required: absent or `null` is a
/// client error, `[]` means every container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatherRuntimeInfoRequest {
    #[serde(rename = "containerIds", default)]
    pub container_ids: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_fields_are_omitted() {
        assert_eq!(
            serde_json::to_string(&ContainerRuntimeInfo::default()).unwrap(),
            "{}"
        );
        let info = ContainerRuntimeInfo {
            os: "rhel".into(),
            kind: "Java".into(),
            runtimes: vec![RuntimeComponent {
                name: "Quarkus".into(),
                version: String::new(),
            }],
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&info).unwrap(),
            r#"{"os":"rhel","kind":"Java","runtimes":[{"name":"Quarkus"}]}"#
        );
    }

    #[test]
    fn field_order_and_names_match_the_reference() {
        let info = ContainerRuntimeInfo {
            os: "a".into(),
            os_version: "b".into(),
            kind: "c".into(),
            kind_version: "d".into(),
            kind_implementer: "e".into(),
            runtimes: vec![RuntimeComponent {
                name: "f".into(),
                version: "g".into(),
            }],
        };
        assert_eq!(
            serde_json::to_string(&info).unwrap(),
            r#"{"os":"a","osVersion":"b","kind":"c","kindVersion":"d","kindImplementer":"e","runtimes":[{"name":"f","version":"g"}]}"#
        );
    }

    #[test]
    fn node_keys_are_sorted() {
        let mut node = NodeRuntimeInfo::new();
        for ns in ["zeta", "alpha", "mid"] {
            node.entry(ns.into())
                .or_default()
                .entry("p".into())
                .or_default()
                .insert("cri-o://x".into(), ContainerRuntimeInfo::default());
        }
        let json = serde_json::to_string(&node).unwrap();
        assert!(json.starts_with(r#"{"alpha":"#), "{json}");
        assert!(json.find("mid").unwrap() < json.find("zeta").unwrap());
    }

    #[test]
    fn anonymized_hashes_every_value_but_keeps_empties() {
        let info = ContainerRuntimeInfo {
            os: "rhel".into(),
            kind: "Java".into(),
            runtimes: vec![RuntimeComponent {
                name: "Quarkus".into(),
                version: String::new(),
            }],
            ..Default::default()
        };
        let h = info.anonymized();
        assert_eq!(h.os, "yqx1WBefoIAq");
        assert_eq!(h.os_version, "");
        assert_eq!(h.kind, "wbpgzhNYZQOi");
        assert_eq!(h.runtimes[0].name, "zBVuVhrrC_vC");
        assert_eq!(h.runtimes[0].version, "");
    }

    #[test]
    fn request_distinguishes_absent_null_and_empty() {
        let absent: GatherRuntimeInfoRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(absent.container_ids, None);
        let null: GatherRuntimeInfoRequest =
            serde_json::from_str(r#"{"containerIds": null}"#).unwrap();
        assert_eq!(null.container_ids, None);
        let empty: GatherRuntimeInfoRequest =
            serde_json::from_str(r#"{"containerIds": [], "other": 1}"#).unwrap();
        assert_eq!(empty.container_ids, Some(vec![]));
        assert_eq!(
            serde_json::to_string(&GatherRuntimeInfoRequest {
                container_ids: Some(vec!["cri-o://a".into()])
            })
            .unwrap(),
            r#"{"containerIds":["cri-o://a"]}"#
        );
    }

    #[test]
    fn null_runtimes_parse_as_empty() {
        let info: ContainerRuntimeInfo = serde_json::from_str(r#"{"runtimes": null}"#).unwrap();
        assert!(info.is_empty());
    }
}
