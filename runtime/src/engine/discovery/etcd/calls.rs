//! One etcd call: its timeout, when it is sent again, and the errors that
//! say what to fix.

use std::time::Duration;

use crate::Error;
use crate::engine::config::EtcdConfig;

/// How long one etcd call may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn etcd_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Discovery(format!("etcd {what}: {e}"))
}

pub(super) async fn timed<T, E: std::fmt::Display>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, Error> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(etcd_error(what, e)),
        Err(_) => Err(etcd_error(what, format!("no answer within {CALL_TIMEOUT:?}"))),
    }
}

/// Like [`timed`], for a call that is sent again, at once, when it reached
/// no member. etcd-client 0.21 balances calls at random over lazy
/// connections to every endpoint and keeps a member that is down in
/// rotation: with one of three down, one call in three fails at once
/// (`Unavailable: tcp connect error`) while two members would answer.
/// Nothing was sent, so this is safe for any call, a transaction too.
pub(super) async fn retried<T, F, Fut>(what: &str, call: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    sent_again_when(what, call, reached_no_member).await
}

/// [`retried`] for a call that changes nothing (a read, a watch), which is
/// also sent again after any failure of the connection it went out on: a
/// connection shared by every runtime of the process may have broken under
/// an etcd restart before this call found out.
pub(super) async fn retried_read<T, F, Fut>(what: &str, call: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    sent_again_when(what, call, broken).await
}

/// [`retried_read`] for a write whose repeat leaves the store as one would
/// (a put of a value, a delete): a state write made just after an etcd
/// restart would otherwise fail on the connection the restart broke.
pub(super) async fn retried_idempotent<T, F, Fut>(what: &str, call: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    sent_again_when(what, call, broken).await
}

/// The call reached no member, or the connection it went out on broke.
fn broken(e: &etcd_client::Error) -> bool {
    reached_no_member(e)
        || matches!(e, etcd_client::Error::TransportError(_))
        || matches!(e, etcd_client::Error::GRpcStatus(s) if s.code() as i32 == 14 || s.code() as i32 == 2)
}

async fn sent_again_when<T, F, Fut>(
    what: &str,
    mut call: F,
    again: impl Fn(&etcd_client::Error) -> bool,
) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
    let mut sent = 1;
    loop {
        match tokio::time::timeout_at(deadline, call()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) if sent < SENDS && again(&e) => {
                tracing::debug!(what, error = %e, "an etcd member is unreachable; sending the call to another");
                sent += 1;
                tokio::time::sleep(RETRY_SOON).await;
            }
            Ok(Err(e)) => return Err(etcd_error(what, e)),
            Err(_) => return Err(etcd_error(what, format!("no answer within {CALL_TIMEOUT:?}"))),
        }
    }
}

/// How many times in all a call that reaches no member is sent: with one
/// member of three down, all fail one time in 3^16; with etcd down, the
/// call gives up within a third of a second.
pub(super) const SENDS: usize = 16;

/// The pause before a call that reached no member is sent again.
pub(super) const RETRY_SOON: Duration = Duration::from_millis(20);

/// `true` when a call failed because the client could not connect to the
/// member it was given to, so that nothing was sent. etcd's own
/// `Unavailable` answers (no leader, leader changed, a request timed out)
/// carry no I/O error and may follow a transaction that was applied: they
/// are not sent again.
pub(super) fn reached_no_member(e: &etcd_client::Error) -> bool {
    use std::io::ErrorKind::{
        AddrNotAvailable, ConnectionRefused, HostUnreachable, NetworkUnreachable, TimedOut,
    };
    // gRPC status codes (tonic is not a dependency of its own here).
    const UNAVAILABLE: i32 = 14;
    let source = match e {
        etcd_client::Error::GRpcStatus(status) if status.code() as i32 == UNAVAILABLE => {
            std::error::Error::source(status)
        }
        etcd_client::Error::TransportError(e) => std::error::Error::source(e),
        _ => return false,
    };
    let mut next = source;
    while let Some(source) = next {
        if let Some(io) = source.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ConnectionRefused | TimedOut | HostUnreachable | NetworkUnreachable | AddrNotAvailable
            );
        }
        next = source.source();
    }
    false
}

/// An error with its sources, which hold what tonic's own message leaves out
/// (the TLS handshake's reason, for one).
fn with_sources(e: &etcd_client::Error) -> String {
    let mut detail = e.to_string();
    let mut next: Option<&dyn std::error::Error> = match e {
        etcd_client::Error::TransportError(e) => std::error::Error::source(e),
        etcd_client::Error::IoError(e) => std::error::Error::source(e),
        _ => None,
    };
    while let Some(source) = next {
        let text = source.to_string();
        if !detail.ends_with(&text) {
            detail = format!("{detail}: {text}");
        }
        next = source.source();
    }
    detail
}

fn uses_tls(config: &EtcdConfig) -> bool {
    config.tls_ca.is_some()
        || config.client_cert.is_some()
        || config.endpoints.iter().any(|e| e.starts_with("https://"))
}

/// [`Error::Refused`] when etcd turned this client away (password, role,
/// certificate), [`Error::Unreachable`] otherwise.
pub(super) fn connect_error(config: &EtcdConfig, address: String, e: &etcd_client::Error) -> Error {
    // gRPC status codes (tonic is not a dependency of its own here).
    const INVALID_ARGUMENT: i32 = 3;
    const PERMISSION_DENIED: i32 = 7;
    const UNAUTHENTICATED: i32 = 16;
    let detail = with_sources(e);
    let lower = detail.to_ascii_lowercase();
    let hint = match e {
        etcd_client::Error::GRpcStatus(status)
            if matches!(status.code() as i32, UNAUTHENTICATED | INVALID_ARGUMENT)
                && (lower.contains("auth") || lower.contains("user")) =>
        {
            Some(if config.user.is_some() {
                "check ROTOR_ETCD_USER and ROTOR_ETCD_PASSWORD".to_string()
            } else {
                "etcd has authentication enabled: set ROTOR_ETCD_USER and ROTOR_ETCD_PASSWORD".to_string()
            })
        }
        etcd_client::Error::GRpcStatus(status) if status.code() as i32 == PERMISSION_DENIED => Some(
            "the user may not read the instances/ prefix: grant its role readwrite on it \
             (`etcdctl role grant-permission ROLE --prefix=true readwrite instances/`)"
                .to_string(),
        ),
        _ if lower.contains("invalid peer certificate") => Some(match &config.tls_ca {
            None => {
                "etcd's certificate is not trusted: set ROTOR_ETCD_TLS_CA (EtcdConfig::tls_ca) to the CA \
                     that signed it"
                    .to_string()
            }
            Some(ca) => format!(
                "etcd's certificate is not signed by {} (ROTOR_ETCD_TLS_CA), or not for this address",
                ca.display()
            ),
        }),
        // An etcd that verifies clients may close the connection on one
        // without a certificate before it says why (TLS 1.3 checks the
        // client's certificate after the client thinks the handshake done).
        _ if ["certificate", "handshake", "tls", "alert"].iter().any(|w| lower.contains(w))
            || (uses_tls(config)
                && ["broken pipe", "connection reset", "connection closed"]
                    .iter()
                    .any(|w| lower.contains(w))) =>
        {
            Some(match &config.client_cert {
                None => {
                    "etcd closed the connection in TLS set-up: an etcd started with --client-cert-auth needs \
                         ROTOR_ETCD_TLS_CERT and ROTOR_ETCD_TLS_KEY (EtcdConfig::client_cert), a certificate \
                         signed by a CA in its --trusted-ca-file"
                        .to_string()
                }
                Some(cert) => format!(
                    "etcd closed the connection in TLS set-up: it does not accept {} (ROTOR_ETCD_TLS_CERT), \
                     which must be signed by a CA in its --trusted-ca-file",
                    cert.cert.display()
                ),
            })
        }
        _ => None,
    };
    let source_of_address = config.source.to_string();
    match hint {
        Some(hint) => Error::Refused { engine: "etcd", address, source_of_address, detail, hint },
        None => Error::Unreachable { engine: "etcd", address, source_of_address, detail },
    }
}

/// etcd's answer to a lease it does not have (`etcdserver: requested lease
/// not found`), as opposed to a failure to reach it.
pub(super) fn is_lease_not_found(e: &Error) -> bool {
    e.to_string().contains("lease not found")
}
