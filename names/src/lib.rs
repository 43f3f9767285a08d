//! Rotor's name rules, in one place.
//!
//! The macros check names at compile time and the runtime checks names built
//! at run time; both call the functions here, so the two can never disagree.
//! This crate has no dependencies so that the proc-macro crate stays cheap to
//! build.
//!
//! | thing | rule |
//! | --- | --- |
//! | namespace | one or more segments joined by `.`; at most [`MAX_NAMESPACE_LEN`] bytes |
//! | namespace segment, component, endpoint | `^[a-z0-9_-]+$`, 1 to [`MAX_NAME_LEN`] bytes |
//! | metric label name | `^[a-zA-Z_][a-zA-Z0-9_]*$`, not starting with `__`, not one Rotor sets itself |

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;

/// Longest component name, endpoint name or namespace segment, in bytes.
///
/// 64 keeps every derived NATS subject and etcd key comfortably short while
/// leaving room for descriptive names.
pub const MAX_NAME_LEN: usize = 64;

/// Longest namespace, in bytes, dots included.
pub const MAX_NAMESPACE_LEN: usize = 128;

/// The character rule, as quoted in error messages.
pub const NAME_PATTERN: &str = "^[a-z0-9_-]+$";

/// The metric label names Rotor sets itself. The runtime's metric
/// definitions use these constants, and a test of the runtime checks that
/// every label its metrics carry is one of them.
pub mod labels {
    /// The component's namespace.
    pub const NAMESPACE: &str = "namespace";
    /// The component's name.
    pub const COMPONENT: &str = "component";
    /// The endpoint's wire name.
    pub const ENDPOINT: &str = "endpoint";
    /// The kind of a server error (`application`, `decode`, ...).
    pub const ERROR_TYPE: &str = "error_type";
    /// The kind of a client-side failure.
    pub const KIND: &str = "kind";
    /// A NATS micro service name.
    pub const SERVICE: &str = "service";
    /// A NATS micro service instance id.
    pub const SERVICE_ID: &str = "service_id";
    /// An instance id.
    pub const INSTANCE: &str = "instance";

    /// Every one of them.
    pub const ALL: &[&str] =
        &[NAMESPACE, COMPONENT, ENDPOINT, ERROR_TYPE, KIND, SERVICE, SERVICE_ID, INSTANCE];
}

/// Metric labels that Rotor sets itself and a component may not redefine.
pub const RESERVED_LABELS: &[&str] = labels::ALL;

/// What a name names; quoted in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NameKind {
    /// A namespace such as `llm` or `llm.prod`.
    Namespace,
    /// A component name such as `tokenizer`.
    Component,
    /// An endpoint name such as `encode`.
    Endpoint,
    /// A metric label name such as `model`.
    Label,
    /// A component's state key such as `config` or `models/active`.
    StateKey,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Namespace => "namespace",
            NameKind::Component => "component name",
            NameKind::Endpoint => "endpoint name",
            NameKind::Label => "metric label name",
            NameKind::StateKey => "state key",
        })
    }
}

/// Which rule a name broke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The name is the empty string.
    Empty,
    /// The name is longer than allowed.
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A character outside the allowed set.
    InvalidChar {
        /// The offending character.
        ch: char,
        /// Its byte offset in the name.
        at: usize,
    },
    /// A namespace with an empty segment: `a..b`, `.a` or `a.`.
    EmptySegment {
        /// Zero-based index of the empty segment.
        index: usize,
    },
    /// A metric label Rotor sets itself, or one starting with `__`.
    ReservedLabel,
    /// An endpoint name that ends in `-` and hex digits, the shape of a
    /// per-instance subject: `{service}.{name}` could then be the subject of
    /// another endpoint on one instance.
    InstanceSuffix {
        /// Byte offset of the `-`.
        at: usize,
    },
}

/// A name that breaks Rotor's rules. Its `Display` quotes the rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameError {
    /// What the name was for.
    pub kind: NameKind,
    /// The name as given.
    pub name: String,
    /// The rule it broke.
    pub problem: Problem,
}

impl NameError {
    /// The rule that applies to names of this kind, in words.
    pub fn rule(&self) -> String {
        match self.kind {
            NameKind::Label => format!(
                "metric label names match ^[a-zA-Z_][a-zA-Z0-9_]*$, do not start with `__`, and are not \
                 one that Rotor sets itself ({})",
                RESERVED_LABELS.join(", ")
            ),
            NameKind::Namespace => format!(
                "a namespace is one or more segments joined by '.', each matching {NAME_PATTERN} \
                 (lower-case ASCII letters, digits, '_' and '-') and at most {MAX_NAME_LEN} bytes; \
                 the whole namespace is at most {MAX_NAMESPACE_LEN} bytes"
            ),
            NameKind::Component => format!(
                "component names match {NAME_PATTERN} (lower-case ASCII letters, digits, '_' and '-') \
                 and are 1 to {MAX_NAME_LEN} bytes long"
            ),
            NameKind::Endpoint => format!(
                "endpoint names match {NAME_PATTERN} (lower-case ASCII letters, digits, '_' and '-'), \
                 are 1 to {MAX_NAME_LEN} bytes long, and do not end in '-' and hex digits"
            ),
            NameKind::StateKey => format!(
                "a state key is one or more segments joined by '/', each matching {NAME_PATTERN} \
                 (lower-case ASCII letters, digits, '_' and '-') and at most {MAX_NAME_LEN} bytes; \
                 the whole key is at most {MAX_NAMESPACE_LEN} bytes"
            ),
        }
    }

    /// The problem alone, without the rule.
    pub fn problem_text(&self) -> String {
        match &self.problem {
            Problem::Empty => format!("{} is empty", self.kind),
            Problem::TooLong { len, max } => {
                format!("{} {:?} is {len} bytes long; the maximum is {max}", self.kind, self.name)
            }
            Problem::InvalidChar { ch, at } => {
                let lower = self.name.to_ascii_lowercase();
                let lower_is_valid = match self.kind {
                    NameKind::Namespace => validate_namespace(&lower).is_ok(),
                    NameKind::StateKey => validate_state_key(&lower).is_ok(),
                    NameKind::Component | NameKind::Endpoint => validate_name(self.kind, &lower).is_ok(),
                    NameKind::Label => false,
                };
                let hint = if ch.is_ascii_uppercase() && lower_is_valid {
                    format!(" (use lower case: {lower:?})")
                } else {
                    String::new()
                };
                format!(
                    "{} {:?} contains {ch:?} at byte {at}, which is not allowed{hint}",
                    self.kind, self.name
                )
            }
            Problem::EmptySegment { index } => {
                let (separator, name) = match self.kind {
                    NameKind::StateKey => ('/', "slash"),
                    _ => ('.', "dot"),
                };
                format!(
                    "{} {:?} has an empty segment (segment {index}); segments are separated by \
                     a single '{separator}' with no leading or trailing {name}",
                    self.kind, self.name
                )
            }
            Problem::ReservedLabel => {
                format!("metric label name {:?} is reserved", self.name)
            }
            Problem::InstanceSuffix { at } => format!(
                "endpoint name {:?} ends in '-' and hex digits (from byte {at}), the shape of one \
                 instance's subject of endpoint {:?}: the two could be the same subject (use '_', as in {:?})",
                self.name,
                &self.name[..*at],
                format!("{}_{}", &self.name[..*at], &self.name[at + 1..]),
            ),
        }
    }
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}; {}", self.kind, self.problem_text(), self.rule())
    }
}

impl std::error::Error for NameError {}

fn error(kind: NameKind, name: &str, problem: Problem) -> NameError {
    NameError { kind, name: name.to_string(), problem }
}

fn check_segment(kind: NameKind, whole: &str, segment: &str, offset: usize) -> Result<(), NameError> {
    if segment.len() > MAX_NAME_LEN {
        return Err(error(kind, whole, Problem::TooLong { len: segment.len(), max: MAX_NAME_LEN }));
    }
    match segment
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'))
    {
        Some((at, ch)) => Err(error(kind, whole, Problem::InvalidChar { ch, at: offset + at })),
        None => Ok(()),
    }
}

/// Checks a component name or an endpoint name.
pub fn validate_name(kind: NameKind, name: &str) -> Result<(), NameError> {
    debug_assert!(matches!(kind, NameKind::Component | NameKind::Endpoint));
    if name.is_empty() {
        return Err(error(kind, name, Problem::Empty));
    }
    check_segment(kind, name, name, 0)
}

/// Checks a component name.
pub fn validate_component(name: &str) -> Result<(), NameError> {
    validate_name(NameKind::Component, name)
}

/// Checks an endpoint name: a name, and not one that ends in `-` and hex
/// digits, since [`instance_subject`] makes `{endpoint}-{id:x}`.
pub fn validate_endpoint(name: &str) -> Result<(), NameError> {
    validate_name(NameKind::Endpoint, name)?;
    if let Some(at) = name.rfind('-')
        && at > 0
        && name.len() > at + 1
        && name[at + 1..].bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(error(NameKind::Endpoint, name, Problem::InstanceSuffix { at }));
    }
    Ok(())
}

/// Checks a namespace: dot-separated segments, each a valid name.
pub fn validate_namespace(namespace: &str) -> Result<(), NameError> {
    validate_segments(NameKind::Namespace, namespace, '.')
}

/// Checks a component's state key: `/`-separated segments, each a valid
/// name, so that a key is also a readable etcd path.
pub fn validate_state_key(key: &str) -> Result<(), NameError> {
    validate_segments(NameKind::StateKey, key, '/')
}

fn validate_segments(kind: NameKind, whole: &str, separator: char) -> Result<(), NameError> {
    if whole.is_empty() {
        return Err(error(kind, whole, Problem::Empty));
    }
    if whole.len() > MAX_NAMESPACE_LEN {
        return Err(error(kind, whole, Problem::TooLong { len: whole.len(), max: MAX_NAMESPACE_LEN }));
    }
    let mut offset = 0;
    for (index, segment) in whole.split(separator).enumerate() {
        if segment.is_empty() {
            return Err(error(kind, whole, Problem::EmptySegment { index }));
        }
        check_segment(kind, whole, segment, offset)?;
        offset += segment.len() + 1;
    }
    Ok(())
}

/// Checks a metric label name given by the user.
pub fn validate_label(name: &str) -> Result<(), NameError> {
    let kind = NameKind::Label;
    let Some(first) = name.chars().next() else {
        return Err(error(kind, name, Problem::Empty));
    };
    if let Some((at, ch)) = name.char_indices().find(|&(i, c)| {
        let ok = c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit());
        !ok
    }) {
        return Err(error(kind, name, Problem::InvalidChar { ch, at }));
    }
    debug_assert!(first.is_ascii_alphabetic() || first == '_');
    if name.starts_with("__") || RESERVED_LABELS.contains(&name) {
        return Err(error(kind, name, Problem::ReservedLabel));
    }
    Ok(())
}

/// The NATS micro service name of a component: the namespace with `.`
/// replaced by `_`, then `_`, then the component name.
///
/// Distinct (namespace, component) pairs can map to one service name
/// (`a.b`/`c` and `a`/`b_c` both give `a_b_c`); the runtime rejects such a
/// pair at start-up rather than merging them.
pub fn service_name(namespace: &str, component: &str) -> String {
    let mut s = String::with_capacity(namespace.len() + component.len() + 1);
    for c in namespace.chars() {
        s.push(if c == '.' { '_' } else { c });
    }
    s.push('_');
    s.push_str(component);
    s
}

/// The queue-group subject of an endpoint, answered by any instance.
pub fn endpoint_subject(service: &str, endpoint: &str) -> String {
    format!("{service}.{endpoint}")
}

/// The subject of an endpoint on one instance.
pub fn instance_subject(service: &str, endpoint: &str, instance_id: i64) -> String {
    format!("{service}.{endpoint}-{instance_id:x}")
}

/// The discovery key that reserves a service name for one (namespace,
/// component) pair, so that two pairs whose names map to the same service
/// cannot both serve, whichever processes they run in.
pub fn service_key(service: &str) -> String {
    format!("services/{service}")
}

/// The etcd key of one of a component's state values: beside its instance
/// keys, under its own prefix, so that a listing of instances never meets
/// one.
pub fn state_key(namespace: &str, component: &str, key: &str) -> String {
    format!("components/{namespace}/{component}/state/{key}")
}

/// The etcd key where an instance publishes its component's descriptor.
pub fn descriptor_key(namespace: &str, component: &str, instance_id: i64) -> String {
    format!("components/{namespace}/{component}/descriptor/{instance_id:x}")
}

/// The etcd key prefix under which every instance of every endpoint of a
/// component registers.
pub fn component_key_prefix(namespace: &str, component: &str) -> String {
    format!("instances/{namespace}/{component}/")
}

/// The etcd key prefix under which every instance of an endpoint registers.
pub fn endpoint_key_prefix(namespace: &str, component: &str, endpoint: &str) -> String {
    format!("instances/{namespace}/{component}/{endpoint}:")
}

/// The etcd key of one endpoint instance.
pub fn instance_key(namespace: &str, component: &str, endpoint: &str, instance_id: i64) -> String {
    format!("instances/{namespace}/{component}/{endpoint}:{instance_id:x}")
}

/// The default component name for a Rust type name: snake case, so
/// `Tokenizer` gives `tokenizer` and `HTTPServer` gives `http_server`.
pub fn snake_case(type_name: &str) -> String {
    let chars: Vec<char> = type_name.chars().collect();
    let mut out = String::with_capacity(type_name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1).copied();
            let boundary = match prev {
                None | Some('_') => false,
                Some(p) if p.is_lowercase() || p.is_ascii_digit() => true,
                Some(p) => p.is_uppercase() && next.is_some_and(char::is_lowercase),
            };
            if boundary {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_name_shaped_like_an_instance_subject_is_refused() {
        for bad in ["ping-1", "work-6a88a234d88d7d07", "a-b-ff"] {
            let e = validate_endpoint(bad).unwrap_err();
            assert!(matches!(e.problem, Problem::InstanceSuffix { .. }), "{bad}: {e}");
            assert_eq!(
                instance_subject(
                    "s",
                    &bad[..bad.rfind('-').unwrap()],
                    i64::from_str_radix(&bad[bad.rfind('-').unwrap() + 1..], 16).unwrap()
                ),
                endpoint_subject("s", bad)
            );
        }
        for good in ["route-v2", "ping", "step_1", "-ff", "a-", "x-1g"] {
            assert!(validate_endpoint(good).is_ok(), "{good}");
        }
        let e = validate_endpoint("step-1").unwrap_err().to_string();
        assert!(e.contains("\"step_1\"") && e.contains("do not end in '-' and hex digits"), "{e}");
    }

    #[test]
    fn accepts_valid_names() {
        for n in ["a", "tokenizer", "tok-2_x", &"a".repeat(MAX_NAME_LEN)] {
            validate_component(n).unwrap();
            validate_endpoint(n).unwrap();
        }
        for ns in ["llm", "llm.prod", "a.b-c.d_e"] {
            validate_namespace(ns).unwrap();
        }
    }

    #[test]
    fn rejects_bad_names_quoting_the_rule() {
        let e = validate_component("Tok").unwrap_err();
        assert_eq!(e.problem, Problem::InvalidChar { ch: 'T', at: 0 });
        assert!(e.to_string().contains(NAME_PATTERN), "{e}");
        assert!(e.to_string().contains("use lower case: \"tok\""), "{e}");
        assert_eq!(validate_endpoint("").unwrap_err().problem, Problem::Empty);
        assert_eq!(validate_endpoint("a.b").unwrap_err().problem, Problem::InvalidChar { ch: '.', at: 1 });
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert_eq!(
            validate_endpoint(&long).unwrap_err().problem,
            Problem::TooLong { len: MAX_NAME_LEN + 1, max: MAX_NAME_LEN }
        );
    }

    #[test]
    fn rejects_bad_namespaces() {
        assert_eq!(validate_namespace("a..b").unwrap_err().problem, Problem::EmptySegment { index: 1 });
        assert_eq!(validate_namespace(".a").unwrap_err().problem, Problem::EmptySegment { index: 0 });
        assert_eq!(validate_namespace("a.").unwrap_err().problem, Problem::EmptySegment { index: 1 });
        assert_eq!(validate_namespace("a.B").unwrap_err().problem, Problem::InvalidChar { ch: 'B', at: 2 });
        let long = vec!["a".repeat(60); 3].join(".");
        assert!(matches!(validate_namespace(&long).unwrap_err().problem, Problem::TooLong { .. }));
    }

    #[test]
    fn labels() {
        validate_label("model").unwrap();
        validate_label("_x1").unwrap();
        assert_eq!(validate_label("endpoint").unwrap_err().problem, Problem::ReservedLabel);
        assert_eq!(validate_label("error_type").unwrap_err().problem, Problem::ReservedLabel);
        assert_eq!(validate_label("__x").unwrap_err().problem, Problem::ReservedLabel);
        assert_eq!(validate_label("1a").unwrap_err().problem, Problem::InvalidChar { ch: '1', at: 0 });
    }

    #[test]
    fn wire_names() {
        let svc = service_name("llm.prod", "tokenizer");
        assert_eq!(svc, "llm_prod_tokenizer");
        assert_eq!(service_name("a.b", "c"), service_name("a", "b_c"));
        assert_eq!(endpoint_subject(&svc, "encode"), "llm_prod_tokenizer.encode");
        assert_eq!(instance_subject(&svc, "encode", 0x1f2e), "llm_prod_tokenizer.encode-1f2e");
        assert_eq!(instance_key("llm", "tok", "encode", 255), "instances/llm/tok/encode:ff");
        assert_eq!(endpoint_key_prefix("llm", "tok", "encode"), "instances/llm/tok/encode:");
        assert!(instance_key("llm", "tok", "encode", 255).starts_with(&component_key_prefix("llm", "tok")));
    }

    #[test]
    fn snake_case_defaults() {
        assert_eq!(snake_case("Tokenizer"), "tokenizer");
        assert_eq!(snake_case("HTTPServer"), "http_server");
        assert_eq!(snake_case("KvCache2Router"), "kv_cache2_router");
        assert_eq!(snake_case("already_snake"), "already_snake");
    }
}
