//! The link-time list of every component in the binary, collected with
//! `inventory`, and the start-up check that no two share a wire name (the
//! runtime runs it when it starts).

use std::collections::HashMap;

use crate::Error;

/// What the macros know about a component, as a constant.
#[derive(Debug)]
pub struct ComponentDescriptor {
    /// Namespace, such as `llm.prod`.
    pub namespace: &'static str,
    /// Component name, such as `tokenizer`.
    pub name: &'static str,
    /// NATS micro service name, such as `llm_prod_tokenizer`.
    pub service: &'static str,
    /// The version of the crate that declares the component.
    pub version: &'static str,
    /// The Rust type the component was declared on.
    pub type_name: &'static str,
    /// Constant metric labels from `#[component(labels(..))]`.
    pub labels: &'static [(&'static str, &'static str)],
    /// `true` for a static component: no discovery registration.
    pub is_static: bool,
    /// The payload codec, from `#[component(codec = "..")]`.
    pub codec: crate::codec::Format,
    /// The endpoints, in declaration order.
    pub endpoints: &'static [EndpointDescriptor],
}

/// What the macros know about an endpoint.
#[derive(Debug)]
pub struct EndpointDescriptor {
    /// Name on the wire.
    pub name: &'static str,
    /// The Rust method.
    pub method: &'static str,
    /// Queue-group subject, `{service}.{name}`.
    pub subject: &'static str,
    /// Request type, as written.
    pub request: &'static str,
    /// Response type, as written.
    pub response: &'static str,
    /// Application error type, as written.
    pub error: &'static str,
    /// `false` when marked `#[endpoint(idempotent = false)]`: never retried.
    pub idempotent: bool,
    /// `true` for a streaming endpoint (its response type is the item type).
    pub streaming: bool,
    /// `#[endpoint(max_request = ..)]`: the largest request payload in
    /// bytes; `None`: the runtime's `max_request`.
    pub max_request: Option<usize>,
}

impl ComponentDescriptor {
    /// `namespace/name (Type)`, for messages.
    pub fn label(&self) -> String {
        format!("{}/{} ({})", self.namespace, self.name, self.type_name)
    }
}

#[doc(hidden)]
pub struct Registered(pub &'static ComponentDescriptor);

inventory::collect!(Registered);

/// Every component linked into this binary, sorted by namespace and name.
pub fn components() -> Vec<&'static ComponentDescriptor> {
    let mut all: Vec<_> = inventory::iter::<Registered>.into_iter().map(|r| r.0).collect();
    all.sort_by_key(|c| (c.namespace, c.name));
    all
}

/// Rejects two components with the same service name or endpoint subject.
/// The runtime runs this when it starts.
pub fn check() -> Result<(), Error> {
    check_all(&components())
}

pub(crate) fn check_all(components: &[&'static ComponentDescriptor]) -> Result<(), Error> {
    let mut services: HashMap<&str, &ComponentDescriptor> = HashMap::new();
    let mut subjects: HashMap<&str, &ComponentDescriptor> = HashMap::new();
    for &c in components {
        if let Some(first) = services.insert(c.service, c) {
            return Err(collision("service name", c.service, first, c));
        }
        for ep in c.endpoints {
            if let Some(first) = subjects.insert(ep.subject, c) {
                return Err(collision("endpoint subject", ep.subject, first, c));
            }
        }
    }
    Ok(())
}

fn collision(
    what: &'static str,
    value: &str,
    first: &ComponentDescriptor,
    second: &ComponentDescriptor,
) -> Error {
    Error::Collision { what, value: value.to_string(), first: first.label(), second: second.label() }
}

#[cfg(test)]
mod tests {
    use super::*;

    static A: ComponentDescriptor = ComponentDescriptor {
        namespace: "a.b",
        name: "c",
        service: "a_b_c",
        version: "0.0.0",
        type_name: "A",
        labels: &[],
        is_static: false,
        endpoints: &[],
        codec: crate::codec::Format::Json,
    };
    static B: ComponentDescriptor = ComponentDescriptor {
        namespace: "a",
        name: "b_c",
        service: "a_b_c",
        version: "0.0.0",
        type_name: "B",
        labels: &[],
        is_static: false,
        endpoints: &[],
        codec: crate::codec::Format::Json,
    };

    #[test]
    fn colliding_service_names_name_both() {
        let err = check_all(&[&A, &B]).unwrap_err().to_string();
        assert!(err.contains("a.b/c (A)") && err.contains("a/b_c (B)"), "{err}");
        check_all(&[&A]).unwrap();
    }
}
