//! The error types: [`Error`] for the runtime (start-up, names, serving),
//! [`TransportError`] for a call that did not reach a handler's answer, and
//! [`CallError`] for what a typed client method returns.

use std::time::Duration;

use rotor_names::NameError;

use crate::InstanceId;

/// An error of the runtime itself: configuration, names, start-up checks,
/// serving and discovery.
///
/// Its `Debug` is its message, so that a `main` returning
/// `Result<(), Box<dyn std::error::Error>>` prints what a person should read.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name built at run time breaks the rules; the message quotes the rule.
    #[error(transparent)]
    Name(#[from] NameError),

    /// Two components linked into this binary share a wire name.
    #[error(
        "{what} `{value}` is used by two components: {first} and {second}; rename one \
         (`#[component(name = \"...\")]` or its namespace)"
    )]
    Collision {
        /// `"service name"` or `"endpoint subject"`.
        what: &'static str,
        /// The colliding name.
        value: String,
        /// The first component, as `namespace/name (Type)`.
        first: String,
        /// The second component.
        second: String,
    },

    /// This runtime already serves the component; one runtime (one lease) is
    /// one instance.
    #[error(
        "{service} is already served by instance {instance} of this runtime; to serve another \
         instance in the same process, use `Runtime::with_new_lease()`"
    )]
    AlreadyServing {
        /// The service name.
        service: String,
        /// This runtime's instance id.
        instance: InstanceId,
    },

    /// The instances serve another version of the contract than the one
    /// this client was built for.
    #[error(
        "{component} is served with another contract than this client's: {}; build both from one \
         version of the types, or make the change compatible",
        differences.join("; ")
    )]
    ContractMismatch {
        /// `namespace/component`.
        component: String,
        /// Each difference, naming the instance and the endpoint.
        differences: Vec<String>,
    },

    /// A component served from handlers was given the same endpoint twice.
    #[error("{component} already has an endpoint `{endpoint}`: give each endpoint its own name")]
    DuplicateEndpoint {
        /// `namespace/component`.
        component: String,
        /// The endpoint name given twice.
        endpoint: String,
    },

    /// Another (namespace, component) pair, perhaps in another process,
    /// holds the service name this component maps to.
    #[error(
        "service name `{service}` is reserved for {owner} in discovery (key `{key}`), so {ours} \
         cannot serve: the two would share NATS subjects. Rename one (`#[component(name = \"...\")]` \
         or its namespace); if {owner} is gone for good, delete the key (`etcdctl del {key}`)"
    )]
    ServiceTaken {
        /// The service name.
        service: String,
        /// The pair that holds it, as `namespace/component`.
        owner: String,
        /// The pair that asked, as `namespace/component`.
        ours: String,
        /// The discovery key of the reservation.
        key: String,
    },

    /// A discovery key exists already (create-only registration).
    #[error("discovery key {key} is already registered; is another process using lease {instance}?")]
    AlreadyRegistered {
        /// The key.
        key: String,
        /// The lease it was registered under.
        instance: InstanceId,
    },

    /// A server could not be reached at start-up.
    #[error(
        "cannot reach {engine} at {address} (set by {source_of_address}): {detail}; is the server \
         running, and is the address right?"
    )]
    Unreachable {
        /// `NATS` or `etcd`.
        engine: &'static str,
        /// The address tried.
        address: String,
        /// The variable (or builder) that gave the address.
        source_of_address: String,
        /// What went wrong.
        detail: String,
    },

    /// A server answered but turned this client away: its credentials or
    /// its certificates. The message says which settings decide it, never
    /// their secret values.
    #[error("{engine} at {address} (set by {source_of_address}) refused this client: {detail}; {hint}")]
    Refused {
        /// `NATS` or `etcd`.
        engine: &'static str,
        /// The address tried.
        address: String,
        /// The variable (or builder) that gave the address.
        source_of_address: String,
        /// What the server or the TLS handshake said.
        detail: String,
        /// What to check.
        hint: String,
    },

    /// The lease was revoked; nothing can be registered under it any more.
    #[error("lease {instance} has been revoked; this runtime was shut down")]
    LeaseRevoked {
        /// The lease.
        instance: InstanceId,
    },

    /// No instance appeared within a bounded wait.
    #[error(
        "no instance of {endpoint} appeared within {after:?}; is a server for it running, and do \
         both use the same ROTOR_ETCD_ENDPOINTS and ROTOR_NATS_URL?"
    )]
    NoInstancesWithin {
        /// `namespace/component/endpoint` of the first endpoint waited for.
        endpoint: String,
        /// The bound.
        after: Duration,
    },

    /// A discovery operation failed.
    #[error("discovery: {0}")]
    Discovery(String),

    /// The transport could not start serving a component.
    #[error("could not serve {service}: {detail}")]
    Bind {
        /// The service name.
        service: String,
        /// What went wrong.
        detail: String,
    },

    /// The program asks for an engine that it was built without.
    #[error(
        "{what} is not built into this program: enable rotor's `{feature}` feature (in Cargo.toml, \
         `rotor = {{ version = \"0.1\", features = [\"{feature}\"] }}`; for the examples, \
         `cargo run --features {feature}`); building it needs protoc (Debian: `apt-get install \
         protobuf-compiler`)"
    )]
    NotBuilt {
        /// What was asked for, and by which setting.
        what: String,
        /// The cargo feature that builds it in.
        feature: &'static str,
    },

    /// A configuration value is missing or wrong.
    #[error("configuration: {0}")]
    Config(String),

    /// A call-level failure outside a typed call.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Why a call failed before the handler's answer reached the caller.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Discovery knows no live instance of the endpoint.
    #[error(
        "no live instance of {endpoint}; start a server for it, or wait with \
         `client.core().wait_for_instances_within(timeout)`"
    )]
    NoInstances {
        /// `namespace/component/endpoint`.
        endpoint: String,
    },

    /// A fan-out to an endpoint whose instances are not known one by one.
    #[error(
        "{endpoint} is reached through its queue group (a static component, or a runtime without \
         discovery), so its instances cannot each be called: fan out to a discovered component"
    )]
    NotListed {
        /// `namespace/component/endpoint`.
        endpoint: String,
    },

    /// A direct call named an instance that discovery does not list.
    #[error("instance {instance} does not serve {endpoint} (not registered, or gone)")]
    UnknownInstance {
        /// `namespace/component/endpoint`.
        endpoint: String,
        /// The requested instance.
        instance: InstanceId,
    },

    /// Nothing listens on the subject any more: the instance died or left.
    #[error("no responders on {subject}{}", instance_suffix(*instance))]
    NoResponders {
        /// The subject the request went to.
        subject: String,
        /// The instance it was meant for, if routed to one.
        instance: Option<InstanceId>,
    },

    /// No reply within the call's timeout.
    #[error("no reply on {subject} within {after:?}{}; raise the timeout with `with_timeout`", instance_suffix(*instance))]
    Timeout {
        /// The subject the request went to.
        subject: String,
        /// The timeout.
        after: Duration,
        /// The instance it was meant for, if routed to one.
        instance: Option<InstanceId>,
    },

    /// The server gave up on the request when its deadline passed.
    #[error("deadline exceeded{}: {message}", instance_suffix(*instance))]
    DeadlineExceeded {
        /// The server's message.
        message: String,
        /// The instance.
        instance: Option<InstanceId>,
    },

    /// The instance a call was in flight to was lost before it answered:
    /// it stopped listening, left discovery, or the connection to it
    /// dropped. Whether the request ran is unknown. Only calls that must not
    /// be sent again end this way (an endpoint with `idempotent = false`, a
    /// call sent to one instance, a stream whose server may still be
    /// sending); any other is sent again elsewhere.
    #[error(
        "{endpoint}: {why} before it answered{}; the request may or may not have run, and it was \
         not sent again: the endpoint is not idempotent, the call names one instance, or a stream \
         may be under way",
        instance_suffix(*instance)
    )]
    InstanceLost {
        /// `namespace/component/endpoint`.
        endpoint: String,
        /// What happened, such as "the instance stopped listening".
        why: &'static str,
        /// The instance.
        instance: Option<InstanceId>,
    },

    /// The connection is gone.
    #[error("disconnected: {0}")]
    Disconnected(String),

    /// The other side broke the protocol: a stream message out of order,
    /// cut short or of an unknown kind.
    #[error("protocol violation{}: {detail}", instance_suffix(*instance))]
    Protocol {
        /// What was wrong.
        detail: String,
        /// The instance that sent it.
        instance: Option<InstanceId>,
    },

    /// The server could not decode the request as the endpoint's request
    /// type: the caller sent the wrong shape.
    #[error("{endpoint} refused the request{}: {detail}", instance_suffix(*instance))]
    BadRequest {
        /// `namespace/component/endpoint`.
        endpoint: String,
        /// The server's message, with its decoder's.
        detail: String,
        /// The instance that refused it.
        instance: Option<InstanceId>,
    },

    /// The handler panicked; the server went on serving.
    #[error("the handler panicked{}: {message}", instance_suffix(*instance))]
    Panicked {
        /// The server's message, with the panic's.
        message: String,
        /// The instance whose handler panicked.
        instance: Option<InstanceId>,
    },

    /// A payload did not decode at the caller: the response, a stream item
    /// or an application error.
    #[error("could not decode the {what}{}: {detail}", instance_suffix(*instance))]
    Decode {
        /// What failed to decode, such as `request of demo/greeter/hello`.
        what: String,
        /// The decoder's message.
        detail: String,
        /// The instance that sent or received it.
        instance: Option<InstanceId>,
    },

    /// A payload could not be encoded.
    #[error("could not encode the {what}: {detail}")]
    Encode {
        /// What failed to encode.
        what: String,
        /// The encoder's message.
        detail: String,
    },

    /// A message is larger than the transport allows.
    #[error(
        "{what} is {size} bytes, over the transport's limit of {limit} bytes (max_payload); send less per message or raise the server's max_payload"
    )]
    Oversize {
        /// `request` or `response`.
        what: String,
        /// Its size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },

    /// The server answered with an error that is not the application's own.
    #[error("{kind:?} error (code {code}){}: {message}", instance_suffix(*instance))]
    Remote {
        /// Its kind.
        kind: ErrorKind,
        /// Its `Nats-Service-Error-Code`.
        code: u16,
        /// Its `Nats-Service-Error`.
        message: String,
        /// The instance that answered.
        instance: Option<InstanceId>,
    },
}

fn instance_suffix(instance: Option<InstanceId>) -> String {
    match instance {
        Some(id) => format!(" (instance {id})"),
        None => String::new(),
    }
}

impl TransportError {
    /// The stable code of this failure, as in `Nats-Service-Error-Code`.
    pub fn code(&self) -> u16 {
        match self {
            TransportError::Decode { .. }
            | TransportError::Encode { .. }
            | TransportError::BadRequest { .. } => ErrorKind::Decode.code(),
            TransportError::Panicked { .. } => ErrorKind::Panic.code(),
            TransportError::Oversize { .. } => ErrorKind::Oversize.code(),
            TransportError::DeadlineExceeded { .. } => ErrorKind::Deadline.code(),
            TransportError::Timeout { .. } => 408,
            TransportError::UnknownInstance { .. } => ErrorKind::UnknownEndpoint.code(),
            TransportError::NotListed { .. } => 400,
            TransportError::NoInstances { .. }
            | TransportError::NoResponders { .. }
            | TransportError::InstanceLost { .. }
            | TransportError::Disconnected(_) => ErrorKind::Unavailable.code(),
            TransportError::Protocol { .. } => 502,
            TransportError::Remote { code, .. } => *code,
        }
    }

    /// A short stable name of the failure, as in the `kind` label of
    /// `rotor_client_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            TransportError::NoInstances { .. } => "no_instances",
            TransportError::NotListed { .. } => "not_listed",
            TransportError::UnknownInstance { .. } => "unknown_instance",
            TransportError::NoResponders { .. } => "no_responders",
            TransportError::Timeout { .. } => "timeout",
            TransportError::DeadlineExceeded { .. } => "deadline",
            TransportError::InstanceLost { .. } => "instance_lost",
            TransportError::Disconnected(_) => "disconnected",
            TransportError::Protocol { .. } => "protocol",
            TransportError::Decode { .. } => "decode",
            TransportError::BadRequest { .. } => "bad_request",
            TransportError::Panicked { .. } => "panic",
            TransportError::Encode { .. } => "encode",
            TransportError::Oversize { .. } => "oversize",
            TransportError::Remote { kind, .. } => kind.as_str(),
        }
    }

    /// The instance the failure concerns, when one was chosen.
    pub fn instance(&self) -> Option<InstanceId> {
        match self {
            TransportError::UnknownInstance { instance, .. } => Some(*instance),
            TransportError::NoResponders { instance, .. }
            | TransportError::Timeout { instance, .. }
            | TransportError::InstanceLost { instance, .. }
            | TransportError::DeadlineExceeded { instance, .. }
            | TransportError::Decode { instance, .. }
            | TransportError::BadRequest { instance, .. }
            | TransportError::Panicked { instance, .. }
            | TransportError::Protocol { instance, .. }
            | TransportError::Remote { instance, .. } => *instance,
            _ => None,
        }
    }

    pub(crate) fn at(mut self, id: InstanceId) -> Self {
        match &mut self {
            TransportError::NoResponders { instance, .. }
            | TransportError::Timeout { instance, .. }
            | TransportError::InstanceLost { instance, .. }
            | TransportError::DeadlineExceeded { instance, .. }
            | TransportError::Decode { instance, .. }
            | TransportError::BadRequest { instance, .. }
            | TransportError::Panicked { instance, .. }
            | TransportError::Protocol { instance, .. }
            | TransportError::Remote { instance, .. } => *instance = Some(id),
            _ => {}
        }
        self
    }
}

/// Why a server answered with an error instead of a response. The codes are
/// stable: tools and dashboards may rely on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The handler returned `Err(e)`; the body is `e` encoded.
    Application,
    /// The request payload did not decode as the endpoint's request type.
    Decode,
    /// No endpoint of that name on the service.
    UnknownEndpoint,
    /// A message exceeded the transport's payload limit.
    Oversize,
    /// The server failed outside the handler (a response that did not
    /// encode, a stream it could not open).
    Internal,
    /// The handler panicked; the server keeps serving.
    Panic,
    /// The instance shut down before the handler finished.
    Unavailable,
    /// The request's deadline passed before the handler finished.
    Deadline,
    /// The instance is shutting down and did not run the request: it may be
    /// sent elsewhere, whatever the endpoint.
    Refused,
}

impl ErrorKind {
    /// The `Nats-Service-Error-Code` value.
    pub fn code(self) -> u16 {
        match self {
            ErrorKind::Decode => 400,
            ErrorKind::UnknownEndpoint => 404,
            ErrorKind::Oversize => 413,
            ErrorKind::Application => 422,
            ErrorKind::Internal | ErrorKind::Panic => 500,
            ErrorKind::Unavailable | ErrorKind::Refused => 503,
            ErrorKind::Deadline => 504,
        }
    }

    /// The `Rotor-Error` value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Application => "application",
            ErrorKind::Decode => "decode",
            ErrorKind::UnknownEndpoint => "unknown-endpoint",
            ErrorKind::Oversize => "oversize",
            ErrorKind::Internal => "internal",
            ErrorKind::Panic => "panic",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Deadline => "deadline",
            ErrorKind::Refused => "refused",
        }
    }

    /// The kind named by a `Rotor-Error` value.
    pub fn parse(s: &str) -> Option<Self> {
        [
            ErrorKind::Application,
            ErrorKind::Decode,
            ErrorKind::UnknownEndpoint,
            ErrorKind::Oversize,
            ErrorKind::Internal,
            ErrorKind::Panic,
            ErrorKind::Unavailable,
            ErrorKind::Deadline,
            ErrorKind::Refused,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// What a typed client method returns on failure: the endpoint's own error
/// type `E`, kept typed, or a [`TransportError`].
#[derive(Debug, thiserror::Error)]
pub enum CallError<E> {
    /// The handler returned `Err(error)`.
    #[error("instance {instance} answered with an application error: {error}")]
    App {
        /// The handler's error, decoded.
        error: E,
        /// The instance whose handler returned it.
        instance: InstanceId,
    },
    /// The call failed outside the handler.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

impl<E> CallError<E> {
    /// The application error, if that is what this is.
    pub fn app(&self) -> Option<&E> {
        match self {
            CallError::App { error, .. } => Some(error),
            CallError::Transport(_) => None,
        }
    }

    /// The application error by value, or `self` back.
    pub fn into_app(self) -> Result<E, Self> {
        match self {
            CallError::App { error, .. } => Ok(error),
            other => Err(other),
        }
    }

    /// The transport error, if that is what this is.
    pub fn transport(&self) -> Option<&TransportError> {
        match self {
            CallError::Transport(e) => Some(e),
            CallError::App { .. } => None,
        }
    }

    /// The instance that failed, when one was reached or chosen.
    pub fn instance(&self) -> Option<InstanceId> {
        match self {
            CallError::App { instance, .. } => Some(*instance),
            CallError::Transport(e) => e.instance(),
        }
    }
}
