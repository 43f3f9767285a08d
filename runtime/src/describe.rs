//! What a served component says about itself: its endpoints, their kinds
//! and types (with JSON Schemas where the types implement
//! `schemars::JsonSchema`), its version, labels and codec, and the
//! capabilities it was served with. Published as the `rotor.descriptor`
//! metadata of `$SRV.INFO`, read back by
//! [`ClientCore::describe`](crate::ClientCore::describe).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ComponentDescriptor;

/// The metadata key of `$SRV.INFO` that holds a [`Description`], as JSON.
pub const METADATA_KEY: &str = "rotor.descriptor";

/// A served component's description.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Description {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub component: String,
    /// The version it was built as.
    pub version: String,
    /// The payload codec: `json` or `msgpack`.
    pub codec: String,
    /// Its constant metric labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Its endpoints, in declaration order.
    pub endpoints: Vec<EndpointDescription>,
    /// What the server says it can do or was configured with, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Value>,
}

/// One endpoint of a [`Description`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointDescription {
    /// Its wire name.
    pub name: String,
    /// `unary` or `stream`.
    pub kind: String,
    /// `false` when its calls must not run twice.
    pub idempotent: bool,
    /// The request type.
    pub request: TypeDescription,
    /// The response type (a stream's item type).
    pub response: TypeDescription,
    /// The application error type.
    pub error: TypeDescription,
}

/// A type of an endpoint: its name as written, and its JSON Schema when it
/// implements `schemars::JsonSchema`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TypeDescription {
    /// The type as written in the source.
    pub name: String,
    /// Its JSON Schema, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
}

/// A short, stable fingerprint of a description's JSON (64-bit FNV-1a, in
/// hex), carried in instance records: equal texts, equal fingerprints, on
/// every platform and release.
pub fn fingerprint(json: &str) -> String {
    let hash = json
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")
}

/// A component's capabilities as JSON, or the error that stops its serve.
pub(crate) fn capabilities_json<T: Serialize + ?Sized>(capabilities: &T) -> Result<Value, crate::Error> {
    serde_json::to_value(capabilities)
        .map_err(|e| crate::Error::Config(format!("the capabilities do not encode as JSON: {e}")))
}

/// The JSON Schemas of one endpoint's request, response and error types.
pub type EndpointSchemas = [Option<Value>; 3];

impl Description {
    /// The description of a macro-made component, with the schemas its
    /// types have.
    pub(crate) fn of(
        desc: &ComponentDescriptor,
        schemas: &[EndpointSchemas],
        capabilities: Option<Value>,
    ) -> Self {
        let typed = |name: &str, schema: Option<&Option<Value>>| TypeDescription {
            name: name.to_string(),
            schema: schema.cloned().flatten(),
        };
        Description {
            namespace: desc.namespace.into(),
            component: desc.name.into(),
            version: desc.version.into(),
            codec: desc.codec.name().into(),
            labels: desc.labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            endpoints: desc
                .endpoints
                .iter()
                .enumerate()
                .map(|(n, ep)| {
                    let s = schemas.get(n);
                    EndpointDescription {
                        name: ep.name.into(),
                        kind: if ep.streaming { "stream" } else { "unary" }.into(),
                        idempotent: ep.idempotent,
                        request: typed(ep.request, s.map(|s| &s[0])),
                        response: typed(ep.response, s.map(|s| &s[1])),
                        error: typed(ep.error, s.map(|s| &s[2])),
                    }
                })
                .collect(),
            capabilities,
        }
    }

    /// Where `published` (what an instance serves) differs from `self`
    /// (what a client was built for), one line per difference, each naming
    /// the endpoint. Types without a schema on either side are compared by
    /// kind only.
    pub fn differences(&self, published: &Description) -> Vec<String> {
        let mut out = Vec::new();
        if self.codec != published.codec {
            out.push(format!(
                "every endpoint: this client encodes payloads as {}, the instance as {}",
                self.codec, published.codec
            ));
        }
        for ours in &self.endpoints {
            let Some(theirs) = published.endpoints.iter().find(|e| e.name == ours.name) else {
                out.push(format!("endpoint `{}`: the instance does not serve it", ours.name));
                continue;
            };
            if ours.kind != theirs.kind {
                out.push(format!(
                    "endpoint `{}`: this client calls it {}, the instance serves it {}",
                    ours.name, ours.kind, theirs.kind
                ));
            }
            for (what, a, b) in [
                ("request", &ours.request, &theirs.request),
                ("response", &ours.response, &theirs.response),
                ("error", &ours.error, &theirs.error),
            ] {
                if let (Some(x), Some(y)) = (&a.schema, &b.schema)
                    && x != y
                {
                    out.push(format!(
                        "endpoint `{}`: the {what} type differs: this client has `{}` {}, the instance `{}` {}",
                        ours.name, a.name, x, b.name, y
                    ));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{Description, fingerprint};

    #[test]
    fn a_codec_that_differs_is_a_difference() {
        let ours = Description {
            namespace: "llm".into(),
            component: "tok".into(),
            version: "0.1.0".into(),
            codec: "json".into(),
            labels: Default::default(),
            endpoints: vec![],
            capabilities: None,
        };
        let theirs = Description { codec: "msgpack".into(), ..ours.clone() };
        assert_eq!(ours.differences(&ours), Vec::<String>::new());
        assert_eq!(
            ours.differences(&theirs),
            ["every endpoint: this client encodes payloads as json, the instance as msgpack"]
        );
    }

    #[test]
    fn the_fingerprint_is_fnv_1a_and_the_same_on_every_build() {
        // The published FNV-1a 64 test vectors.
        assert_eq!(fingerprint(""), "cbf29ce484222325");
        assert_eq!(fingerprint("a"), "af63dc4c8601ec8c");
        assert_ne!(fingerprint(r#"{"v":1}"#), fingerprint(r#"{"v":2}"#));
    }
}
