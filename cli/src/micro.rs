//! The NATS micro protocol as a client sees it: one request to `$SRV.PING`,
//! `$SRV.INFO` or `$SRV.STATS`, answered by every instance, so the replies
//! are collected on an inbox for a bounded time.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::Failure;

/// The metadata key under which a Rotor service names its instance.
pub const INSTANCE: &str = "rotor.instance";

/// A `$SRV.PING` reply. Fields default, so that any micro service parses.
#[derive(Clone, Debug, Deserialize)]
pub struct Ping {
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: HashMap<String, String>,
}

/// A `$SRV.INFO` reply.
#[derive(Clone, Debug, Deserialize)]
pub struct Info {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: HashMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub endpoints: Vec<EndpointInfo>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct EndpointInfo {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub queue_group: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: HashMap<String, String>,
}

/// Go services send `null` for an empty map or list.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl Ping {
    pub fn instance(&self) -> Option<&str> {
        self.metadata.get(INSTANCE).map(String::as_str)
    }
}

impl Info {
    pub fn instance(&self) -> Option<&str> {
        self.metadata.get(INSTANCE).map(String::as_str)
    }
}

/// The subject of `verb` for one service, or every service.
pub fn subject(verb: &str, service: Option<&str>) -> String {
    match service {
        Some(service) => format!("$SRV.{verb}.{service}"),
        None => format!("$SRV.{verb}"),
    }
}

/// Sends one request to `subject` and collects the replies that arrive
/// within `timeout`, or until `enough` says every expected one is in.
/// Replies that do not parse as `T` are skipped: another program may share
/// the subject space.
pub async fn collect<T: DeserializeOwned>(
    client: &async_nats::Client,
    subject: String,
    timeout: Duration,
    mut enough: impl FnMut(&[T]) -> bool,
) -> Result<Vec<T>, Failure> {
    let lost = |e: &dyn std::fmt::Display| Failure::new(format!("NATS: cannot send {subject}: {e}"));
    let inbox = client.new_inbox();
    // Subscribed before the request goes out, so that no reply is missed.
    let mut replies = client.subscribe(inbox.clone()).await.map_err(|e| lost(&e))?;
    client.publish_with_reply(subject.clone(), inbox, bytes::Bytes::new()).await.map_err(|e| lost(&e))?;
    client.flush().await.map_err(|e| lost(&e))?;
    let mut collected = Vec::new();
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    while !enough(&collected) {
        tokio::select! {
            () = &mut deadline => break,
            reply = replies.next() => match reply {
                Some(m) => {
                    if let Ok(value) = serde_json::from_slice::<T>(&m.payload) {
                        collected.push(value);
                    }
                }
                None => break,
            },
        }
    }
    Ok(collected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_of_other_micro_services_parse_with_nulls_and_gaps() {
        let info: Info =
            serde_json::from_str(r#"{"name":"x","id":"1","metadata":null,"endpoints":null}"#).unwrap();
        assert!(info.endpoints.is_empty() && info.instance().is_none());
        let ping: Ping = serde_json::from_str(r#"{"metadata":{"rotor.instance":"2a"}}"#).unwrap();
        assert_eq!(ping.instance(), Some("2a"));
    }
}
