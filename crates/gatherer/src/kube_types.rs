//! The few pod fields the gatherer reads, and a streaming reader for pod lists.
//!
//! Pods are deserialised into these slim types (everything else, such as managed fields,
//! annotations and volumes, is skipped by the parser) and handed one by one to a
//! [`PodSink`], so a whole page or file of pods is never held in memory.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// `null` and absent both mean "empty", as for Go's zero values.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "nullable")]
    pub spec: PodSpec,
    #[serde(default, deserialize_with = "nullable")]
    pub status: PodStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub namespace: String,
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default, deserialize_with = "nullable")]
    pub node_name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub restart_policy: String,
    #[serde(default, deserialize_with = "nullable")]
    pub init_containers: Vec<Container>,
    #[serde(default, deserialize_with = "nullable")]
    pub containers: Vec<Container>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub image: String,
    #[serde(default, deserialize_with = "nullable")]
    pub command: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(default, deserialize_with = "nullable")]
    pub phase: String,
    #[serde(rename = "podIP", default, deserialize_with = "nullable")]
    pub pod_ip: String,
    #[serde(default, deserialize_with = "nullable")]
    pub init_container_statuses: Vec<ContainerStatus>,
    #[serde(default, deserialize_with = "nullable")]
    pub container_statuses: Vec<ContainerStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(rename = "imageID", default, deserialize_with = "nullable")]
    pub image_id: String,
    #[serde(rename = "containerID", default, deserialize_with = "nullable")]
    pub container_id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub state: ContainerState,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ContainerState {
    /// Only whether the container is terminated matters (`state.terminated != nil`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminated: Option<serde_json::Value>,
}

impl ContainerState {
    pub fn is_terminated(&self) -> bool {
        self.terminated.as_ref().is_some_and(|v| !v.is_null())
    }
}

/// Receives the pods of a list as they are parsed.
pub trait PodSink {
    fn pod(&mut self, pod: Pod);
}

impl<F: FnMut(Pod)> PodSink for F {
    fn pod(&mut self, pod: Pod) {
        self(pod)
    }
}

/// What is kept of a list's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListMeta {
    /// Token for the next page; `None` when this was the last page.
    pub continue_token: Option<String>,
    /// Number of items in this list.
    pub items: usize,
}

#[derive(Deserialize)]
struct RawListMeta {
    #[serde(rename = "continue", default)]
    continue_: Option<String>,
}

/// Streams a `PodList` (`{"metadata": {...}, "items": [...]}`) into a [`PodSink`].
pub struct PodListSeed<'a, S: PodSink> {
    pub sink: &'a mut S,
}

impl<'de, S: PodSink> DeserializeSeed<'de> for PodListSeed<'_, S> {
    type Value = ListMeta;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ListMeta, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, S: PodSink> Visitor<'de> for PodListSeed<'_, S> {
    type Value = ListMeta;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a PodList object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ListMeta, A::Error> {
        let mut meta = ListMeta::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "items" => {
                    meta.items += map.next_value_seed(ItemsSeed {
                        sink: &mut *self.sink,
                    })?;
                }
                "metadata" => {
                    let raw: Option<RawListMeta> = map.next_value()?;
                    meta.continue_token = raw
                        .and_then(|m| m.continue_)
                        .filter(|token| !token.is_empty());
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(meta)
    }
}

struct ItemsSeed<'a, S: PodSink> {
    sink: &'a mut S,
}

impl<'de, S: PodSink> DeserializeSeed<'de> for ItemsSeed<'_, S> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, S: PodSink> Visitor<'de> for ItemsSeed<'_, S> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of pods")
    }

    fn visit_unit<E>(self) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut n = 0;
        while let Some(pod) = seq.next_element::<Pod>()? {
            n += 1;
            self.sink.pod(pod);
        }
        Ok(n)
    }
}

/// Parses one pod list from `text`, feeding its pods to `sink`.
pub fn parse_pod_list<S: PodSink>(text: &str, sink: &mut S) -> Result<ListMeta, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let meta = PodListSeed { sink }.deserialize(&mut de)?;
    de.end()?;
    Ok(meta)
}

/// Parses one pod list from a reader (the `--pods-file`), feeding its pods to `sink`.
pub fn read_pod_list<R: std::io::Read, S: PodSink>(
    reader: R,
    sink: &mut S,
) -> Result<ListMeta, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let meta = PodListSeed { sink }.deserialize(&mut de)?;
    de.end()?;
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_items_and_reads_the_continue_token() {
        let text = r#"{"kind":"PodList","apiVersion":"v1",
            "metadata":{"resourceVersion":"12","continue":"tok"},
            "items":[
              {"metadata":{"name":"a","namespace":"ns","managedFields":[{"x":1}]},
               "spec":{"nodeName":"n1","restartPolicy":"Always","containers":[{"name":"c","image":"i","command":["sh"],"args":null}]},
               "status":{"phase":"Running","podIP":"10.0.0.1","containerStatuses":[{"name":"c","imageID":"x","containerID":"cri-o://1","state":{"running":{}}}]}},
              {"metadata":{"name":"b","namespace":"ns"},"spec":null,"status":{"containerStatuses":[{"name":"c","state":{"terminated":{"exitCode":0}}}]}}
            ]}"#;
        let mut seen = Vec::new();
        let meta = parse_pod_list(text, &mut |p: Pod| seen.push(p)).unwrap();
        assert_eq!(meta.continue_token.as_deref(), Some("tok"));
        assert_eq!(meta.items, 2);
        assert_eq!(seen[0].metadata.name, "a");
        assert_eq!(seen[0].spec.containers[0].command, vec!["sh".to_owned()]);
        assert!(seen[0].spec.containers[0].args.is_empty());
        assert_eq!(seen[0].status.pod_ip, "10.0.0.1");
        assert!(!seen[0].status.container_statuses[0].state.is_terminated());
        assert!(seen[1].status.container_statuses[0].state.is_terminated());
        assert_eq!(seen[1].spec, PodSpec::default());
    }

    #[test]
    fn empty_continue_means_last_page_and_null_items_are_empty() {
        let mut n = 0;
        let meta = parse_pod_list(
            r#"{"metadata":{"continue":""},"items":null}"#,
            &mut |_p: Pod| n += 1,
        )
        .unwrap();
        assert_eq!(meta.continue_token, None);
        assert_eq!(n, 0);
    }

    #[test]
    fn trailing_garbage_and_wrong_types_are_errors() {
        let mut sink = |_p: Pod| {};
        assert!(parse_pod_list(r#"{"items":[]} x"#, &mut sink).is_err());
        assert!(parse_pod_list(r#"{"items":[{"metadata":{"name":5}}]}"#, &mut sink).is_err());
        assert!(parse_pod_list(r#"[]"#, &mut sink).is_err());
    }

    #[test]
    fn null_terminated_state_is_not_terminated() {
        let s: ContainerStatus =
            serde_json::from_str(r#"{"name":"c","state":{"terminated":null}}"#).unwrap();
        assert!(!s.state.is_terminated());
    }
}
