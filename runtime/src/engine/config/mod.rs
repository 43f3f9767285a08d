//! Configuration: from `ROTOR_*` environment variables or a builder.
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `ROTOR_NATS_URL` | NATS server(s), comma-separated; set: NATS transport | unset: embedded |
//! | `ROTOR_NATS_TOKEN` | NATS token authentication | |
//! | `ROTOR_NATS_USER`, `ROTOR_NATS_PASSWORD` | NATS user/password authentication | |
//! | `ROTOR_NATS_NKEY` | file holding the NATS user's nkey seed (`SU...`) | |
//! | `ROTOR_NATS_CREDS` | NATS credentials file (user JWT + nkey seed) | |
//! | `ROTOR_NATS_TLS_CA` | PEM file of the CA that signed the NATS server's certificate; set: TLS | |
//! | `ROTOR_NATS_TLS_CERT`, `ROTOR_NATS_TLS_KEY` | PEM files of this client's certificate and key, for a server that verifies clients; set: TLS | |
//! | `ROTOR_ETCD_ENDPOINTS` | etcd endpoints, comma-separated (`https://` for TLS); set: etcd discovery | unset: no discovery |
//! | `ROTOR_ETCD_USER`, `ROTOR_ETCD_PASSWORD` | etcd authentication | |
//! | `ROTOR_ETCD_TLS_CA` | PEM file of the CA that signed etcd's certificate | |
//! | `ROTOR_ETCD_TLS_CERT`, `ROTOR_ETCD_TLS_KEY` | PEM files of this client's certificate and key, for an etcd with `--client-cert-auth` | |
//! | `ROTOR_LEASE_TTL_SECS` | discovery lease time-to-live | 10 |
//! | `ROTOR_CONNECT_TIMEOUT_SECS` | how long to try to reach a server at start-up | 5 |
//! | `ROTOR_REQUEST_TIMEOUT_SECS` | default call timeout | 30 |
//! | `ROTOR_STATUS_ADDR` | address of the status server (`/metrics`, `/health`, `/live`) | none |
//! | `ROTOR_STATS_SCRAPE_SECS` | interval of the `$SRV.STATS` scrape into `rotor_nats_service_*` | off |
//! | `ROTOR_TCP_ADDR` | where a serving runtime's direct plane listens (`10.0.0.5:7000`) | not listening |
//! | `ROTOR_TCP_ADVERTISE` | the host (or `host:port`) its records advertise | the bound address |
//! | `ROTOR_TCP_TLS_CA`, `ROTOR_TCP_TLS_CERT`, `ROTOR_TCP_TLS_KEY` | mutual TLS of the direct plane | the NATS CA; off |
//! | `ROTOR_PLANE` | `direct`: straight to instances that advertise an address; `nats`: always over NATS | `direct` |
//!
//! At most one of the NATS token, user, nkey and credentials is set; a
//! client certificate comes with its key. Secrets (token, passwords) never
//! show in `Debug` output or in errors: both print `<redacted>` instead, and
//! a password in a URL (`nats://user:pass@host`) likewise. Files are named
//! by their path, never by their contents.
//!
//! NATS without etcd is the static mode: calls go to queue groups, with no
//! discovery. etcd without NATS is an error: nothing would carry requests.

mod direct;

use std::path::PathBuf;
use std::time::Duration;

pub(crate) use direct::check_secured;
pub use direct::{DirectConfig, DirectTls, Plane};

use crate::Error;

/// Items a caller lets a server send ahead by default.
pub const DEFAULT_STREAM_WINDOW: u32 = 4096;
/// Bytes a caller lets a server send ahead by default: with the item window,
/// what bounds the memory one stream can hold up, whatever its item size.
pub const DEFAULT_STREAM_WINDOW_BYTES: u64 = 4 * 1024 * 1024;
/// Stream heartbeat and keep-alive interval by default.
pub const DEFAULT_STREAM_HEARTBEAT: Duration = Duration::from_secs(1);

/// Tunables and engine settings of a runtime.
#[derive(Clone, Debug)]
pub struct Config {
    /// Timeout of a call when the client sets none.
    pub request_timeout: Duration,
    /// How long a graceful shutdown waits for requests in flight.
    pub drain_timeout: Duration,
    /// Time-to-live of the discovery lease; kept alive at a third of it.
    pub lease_ttl: Duration,
    /// How long start-up tries to reach each server.
    pub connect_timeout: Duration,
    /// How many times an idempotent call is retried on another instance
    /// when its instance turns out to be gone ("no responders").
    pub retries: u32,
    /// Stream items a server may send ahead of the caller's consumption.
    pub stream_window: u32,
    /// Stream bytes a server may send ahead of the caller's consumption.
    pub stream_window_bytes: u64,
    /// Interval of stream heartbeats and keep-alives; three silent intervals
    /// end a stream with an error.
    pub stream_heartbeat: Duration,
    /// Where the status server listens (`/metrics`, `/health`, `/live`).
    pub status_addr: Option<std::net::SocketAddr>,
    /// How often to scrape `$SRV.STATS` of the served components into the
    /// `rotor_nats_service_*` gauges; `None`: never.
    pub stats_scrape_interval: Option<Duration>,
    /// The NATS transport; `None`: in-process.
    pub nats: Option<NatsConfig>,
    /// etcd discovery; `None`: in-memory discovery (embedded) or none (static).
    pub etcd: Option<EtcdConfig>,
    /// Where a serving runtime's direct plane listens; `None`: it does not.
    pub direct: Option<DirectConfig>,
    /// Mutual TLS of the direct plane, listening and calling.
    pub direct_tls: Option<DirectTls>,
    /// The plane calls go over.
    pub plane: Plane,
    /// The largest request payload an endpoint this process serves takes,
    /// in bytes (`ROTOR_MAX_REQUEST`; 32 MiB). A larger one is refused with
    /// `oversize` (413) naming the limit, over NATS before any of its
    /// chunks is read.
    pub max_request: usize,
    /// The largest message this process takes over the direct plane
    /// (`ROTOR_TCP_MAX_PAYLOAD`; 64 MiB). Each connection sends at most the
    /// smaller of its two sides' limits, which their hellos announce, so a
    /// message one side would refuse fails its call with `Oversize` before
    /// it is sent.
    pub direct_max_payload: usize,
}

/// The largest request payload an endpoint takes by default: 32 MiB.
pub const DEFAULT_MAX_REQUEST: usize = 32 * 1024 * 1024;

impl Default for Config {
    fn default() -> Self {
        Config {
            request_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            lease_ttl: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            retries: 3,
            stream_window: DEFAULT_STREAM_WINDOW,
            stream_window_bytes: DEFAULT_STREAM_WINDOW_BYTES,
            stream_heartbeat: DEFAULT_STREAM_HEARTBEAT,
            status_addr: None,
            stats_scrape_interval: None,
            nats: None,
            etcd: None,
            direct: None,
            direct_tls: None,
            plane: Plane::Direct,
            direct_max_payload: crate::engine::transport::direct::DEFAULT_MAX_PAYLOAD,
            max_request: DEFAULT_MAX_REQUEST,
        }
    }
}

/// How to reach NATS.
#[derive(Clone, Default)]
pub struct NatsConfig {
    /// Server URLs, such as `nats://127.0.0.1:4222`.
    pub urls: Vec<String>,
    /// Authentication.
    pub auth: NatsAuth,
    /// CA certificate (PEM file) for TLS; set, the connection must be TLS.
    pub tls_ca: Option<PathBuf>,
    /// This client's certificate and key, presented to a server that
    /// verifies clients (nats-server's `tls { verify: true }`); set, the
    /// connection must be TLS.
    pub client_cert: Option<ClientCertificate>,
    /// Where the URL came from, for error messages.
    pub source: Source,
}

impl std::fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConfig")
            .field("urls", &self.urls.iter().map(|u| redact_url(u)).collect::<Vec<_>>())
            .field("auth", &self.auth)
            .field("tls_ca", &self.tls_ca)
            .field("client_cert", &self.client_cert)
            .field("source", &self.source)
            .finish()
    }
}

impl NatsConfig {
    /// The URLs as errors and logs may show them: a password in one is
    /// `<redacted>`.
    pub fn display_urls(&self) -> String {
        self.urls.iter().map(|u| redact_url(u)).collect::<Vec<_>>().join(",")
    }

    /// Whether the connection must be TLS: a CA or a client certificate is set.
    pub fn requires_tls(&self) -> bool {
        self.tls_ca.is_some() || self.client_cert.is_some()
    }

    /// What to check when the server turned this client away: the
    /// settings (and the variables behind them) that decide it. `lower` is
    /// the error's message in lower case; `tls`: it happened in TLS set-up.
    fn refusal_hint(&self, lower: &str, tls: bool) -> String {
        if tls && lower.contains("invalid peer certificate") {
            // This client does not trust the server.
            return match &self.tls_ca {
                None => {
                    "the server's certificate is not trusted: set ROTOR_NATS_TLS_CA (NatsConfig::tls_ca) to \
                         the CA that signed it"
                        .into()
                }
                Some(ca) => format!(
                    "the server's certificate is not signed by {} (ROTOR_NATS_TLS_CA), or not for this address",
                    ca.display()
                ),
            };
        }
        if tls {
            // The server does not accept this client's certificate, or its lack of one.
            return match &self.client_cert {
                None => "the server verifies clients: set ROTOR_NATS_TLS_CERT and ROTOR_NATS_TLS_KEY \
                         (NatsConfig::client_cert) to a certificate signed by a CA in its `tls { ca_file }`"
                    .into(),
                Some(cert) => format!(
                    "the server does not accept {} (ROTOR_NATS_TLS_CERT): it must be signed by a CA in the \
                     server's `tls {{ ca_file }}`",
                    cert.cert.display()
                ),
            };
        }
        let in_url = self.urls.iter().any(|u| redact_url(u) != u.as_str());
        let what = match &self.auth {
            NatsAuth::None if in_url => "check the user and password (or token) in ROTOR_NATS_URL",
            NatsAuth::None => {
                "it asks for credentials: set ROTOR_NATS_TOKEN, ROTOR_NATS_USER and ROTOR_NATS_PASSWORD, \
                 ROTOR_NATS_NKEY or ROTOR_NATS_CREDS"
            }
            NatsAuth::Token(_) => "check ROTOR_NATS_TOKEN",
            NatsAuth::UserPassword { .. } => "check ROTOR_NATS_USER and ROTOR_NATS_PASSWORD",
            NatsAuth::NkeyFile(_) => {
                "check that the server lists the public key of the seed in ROTOR_NATS_NKEY"
            }
            NatsAuth::CredsFile(_) => {
                "check that the user JWT in ROTOR_NATS_CREDS is signed by an account the server trusts, and not \
                 expired or revoked"
            }
        };
        match &self.client_cert {
            Some(cert) if matches!(self.auth, NatsAuth::None) && !in_url => {
                format!("{what}; or map the certificate {} to a user on the server", cert.cert.display())
            }
            _ => what.to_string(),
        }
    }
}

/// A file the configuration names, checked before connecting so that the
/// error names the file and the setting rather than an anonymous I/O error.
fn readable(path: &std::path::Path, what: &str, setting: &str) -> Result<(), Error> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| Error::Config(format!("cannot read {what} {} ({setting}): {e}", path.display())))
}

impl NatsConfig {
    /// `options` with this configuration's authentication and TLS.
    pub(crate) async fn apply(
        &self,
        mut options: async_nats::ConnectOptions,
    ) -> Result<async_nats::ConnectOptions, Error> {
        options = match &self.auth {
            NatsAuth::None => options,
            NatsAuth::Token(token) => options.token(token.clone()),
            NatsAuth::UserPassword { user, password } => {
                options.user_and_password(user.clone(), password.clone())
            }
            NatsAuth::NkeyFile(path) => {
                let seed = tokio::fs::read_to_string(path).await.map_err(|e| {
                    Error::Config(format!(
                        "cannot read the NATS nkey seed file {} (ROTOR_NATS_NKEY): {e}",
                        path.display()
                    ))
                })?;
                let seed = seed.trim();
                // The contents stay out of the message: they are the secret.
                if !seed.starts_with("SU") || seed.contains(char::is_whitespace) {
                    return Err(Error::Config(format!(
                        "the NATS nkey seed file {} (ROTOR_NATS_NKEY) does not hold a user seed alone: \
                         one line starting with SU, as `nk -gen user` writes it",
                        path.display()
                    )));
                }
                options.nkey(seed.to_string())
            }
            NatsAuth::CredsFile(path) => options.credentials_file(path).await.map_err(|e| {
                Error::Config(format!(
                    "cannot read the NATS credentials file {} (ROTOR_NATS_CREDS): {e}",
                    path.display()
                ))
            })?,
        };
        if let Some(ca) = &self.tls_ca {
            readable(ca, "the NATS TLS CA", "ROTOR_NATS_TLS_CA, NatsConfig::tls_ca")?;
            options = options.add_root_certificates(ca.clone());
        }
        if let Some(ClientCertificate { cert, key }) = &self.client_cert {
            readable(cert, "the NATS client certificate", "ROTOR_NATS_TLS_CERT, NatsConfig::client_cert")?;
            readable(key, "the NATS client key", "ROTOR_NATS_TLS_KEY, NatsConfig::client_cert")?;
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        Ok(options.require_tls(self.requires_tls()))
    }

    /// The error for a connection that `e` ended: [`Error::Refused`] when
    /// the server turned this client away (credentials, certificates),
    /// [`Error::Unreachable`] otherwise.
    pub(crate) fn connect_error(&self, e: &async_nats::ConnectError) -> Error {
        use async_nats::ConnectErrorKind as Kind;
        let detail = e.to_string();
        let lower = detail.to_ascii_lowercase();
        // A server that verifies clients may close the connection on one
        // without a certificate before it says why (TLS 1.3 checks the
        // client's certificate after the client thinks the handshake done).
        let tls = e.kind() == Kind::Tls
            || ["certificate", "alert", "handshake"].iter().any(|w| lower.contains(w))
            || (self.requires_tls()
                && ["broken pipe", "connection reset", "connection closed"]
                    .iter()
                    .any(|w| lower.contains(w)));
        let refused = tls || matches!(e.kind(), Kind::AuthorizationViolation | Kind::Authentication);
        if refused {
            Error::Refused {
                engine: "NATS",
                address: self.display_urls(),
                source_of_address: self.source.to_string(),
                detail,
                hint: self.refusal_hint(&lower, tls),
            }
        } else {
            Error::Unreachable {
                engine: "NATS",
                address: self.display_urls(),
                source_of_address: self.source.to_string(),
                detail,
            }
        }
    }
}

/// NATS authentication.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum NatsAuth {
    /// None.
    #[default]
    None,
    /// A token.
    Token(String),
    /// A user and a password.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// A file holding an nkey seed (`SU...`, as `nk -gen user` writes it):
    /// the server knows the user by the seed's public key (`U...`) and
    /// checks a signature; the seed itself never leaves this process.
    NkeyFile(PathBuf),
    /// A credentials file (user JWT and nkey seed), for a server in
    /// operator mode.
    CredsFile(PathBuf),
}

/// What `Debug` prints in place of a secret.
const REDACTED: &str = "<redacted>";

/// A secret's stand-in in `Debug` output.
struct Redacted;

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsAuth::None => f.write_str("None"),
            NatsAuth::Token(_) => f.debug_tuple("Token").field(&Redacted).finish(),
            NatsAuth::UserPassword { user, password: _ } => {
                f.debug_struct("UserPassword").field("user", user).field("password", &Redacted).finish()
            }
            NatsAuth::NkeyFile(path) => f.debug_tuple("NkeyFile").field(path).finish(),
            NatsAuth::CredsFile(path) => f.debug_tuple("CredsFile").field(path).finish(),
        }
    }
}

/// A client certificate and its private key, PEM files, presented to a
/// server that verifies its clients (mutual TLS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The certificate (PEM), signed by a CA the server trusts; it may be
    /// followed by intermediate certificates.
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// How to reach etcd.
#[derive(Clone, Default)]
pub struct EtcdConfig {
    /// Endpoints, such as `http://127.0.0.1:2379`; `https://` ones for TLS.
    pub endpoints: Vec<String>,
    /// User and password.
    pub user: Option<(String, String)>,
    /// CA certificate (PEM file) for TLS.
    pub tls_ca: Option<PathBuf>,
    /// This client's certificate and key, for an etcd started with
    /// `--client-cert-auth`.
    pub client_cert: Option<ClientCertificate>,
    /// Where the endpoints came from, for error messages.
    pub source: Source,
}

impl std::fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let user = self.user.as_ref().map(|(user, _)| (user, Redacted));
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints.iter().map(|u| redact_url(u)).collect::<Vec<_>>())
            .field("user", &user)
            .field("tls_ca", &self.tls_ca)
            .field("client_cert", &self.client_cert)
            .field("source", &self.source)
            .finish()
    }
}

impl EtcdConfig {
    /// The endpoints as errors and logs may show them.
    pub fn display_endpoints(&self) -> String {
        self.endpoints.iter().map(|u| redact_url(u)).collect::<Vec<_>>().join(",")
    }
}

/// `url` with the password (or token) of its user part replaced by
/// `<redacted>`: `nats://u:p@h` gives `nats://u:<redacted>@h`, and
/// `nats://token@h` gives `nats://<redacted>@h`.
pub fn redact_url(url: &str) -> std::borrow::Cow<'_, str> {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[after_scheme..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return url.into() };
    let user_info = &rest[..at];
    let kept = match user_info.split_once(':') {
        Some((user, _)) => format!("{user}:{REDACTED}"),
        None => REDACTED.to_string(),
    };
    format!("{}{kept}{}", &url[..after_scheme], &rest[at..]).into()
}

/// Where a setting came from, named in errors so the user knows what to fix.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Source {
    /// The builder.
    #[default]
    Builder,
    /// An environment variable.
    Env(&'static str),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Builder => f.write_str("the runtime builder"),
            Source::Env(var) => write!(f, "{var}"),
        }
    }
}

fn list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

fn seconds(var: &impl Fn(&str) -> Option<String>, name: &'static str) -> Result<Option<Duration>, Error> {
    match var(name) {
        None => Ok(None),
        Some(v) => match v.parse::<f64>() {
            Ok(s) if s > 0.0 && s.is_finite() => Ok(Some(Duration::from_secs_f64(s))),
            _ => Err(Error::Config(format!("{name}={v} is not a positive number of seconds"))),
        },
    }
}

/// A certificate and its key from the two variables, both set or neither.
fn client_certificate(
    var: &impl Fn(&str) -> Option<String>,
    cert: &'static str,
    key: &'static str,
) -> Result<Option<ClientCertificate>, Error> {
    match (var(cert), var(key)) {
        (Some(c), Some(k)) => Ok(Some(ClientCertificate { cert: c.into(), key: k.into() })),
        (None, None) => Ok(None),
        (Some(_), None) => {
            Err(Error::Config(format!("{cert} is set but {key} is not: set both, or neither")))
        }
        (None, Some(_)) => {
            Err(Error::Config(format!("{key} is set but {cert} is not: set both, or neither")))
        }
    }
}

impl Config {
    /// Reads the `ROTOR_*` variables (see the [module docs](self)).
    pub fn from_env() -> Result<Config, Error> {
        Config::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the `ROTOR_*` settings from `lookup`, which returns a variable's
    /// value; blank values count as unset.
    pub fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, Error> {
        let var = |name: &str| lookup(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let mut config = Config::default();
        if let Some(ttl) = seconds(&var, "ROTOR_LEASE_TTL_SECS")? {
            if ttl < Duration::from_secs(2) {
                return Err(Error::Config(
                    "ROTOR_LEASE_TTL_SECS must be at least 2: the lease is kept alive at a third of it"
                        .into(),
                ));
            }
            config.lease_ttl = ttl;
        }
        if let Some(t) = seconds(&var, "ROTOR_CONNECT_TIMEOUT_SECS")? {
            config.connect_timeout = t;
        }
        if let Some(t) = seconds(&var, "ROTOR_REQUEST_TIMEOUT_SECS")? {
            config.request_timeout = t;
        }
        if let Some(addr) = var("ROTOR_STATUS_ADDR") {
            config.status_addr = Some(addr.parse().map_err(|e| {
                Error::Config(format!(
                    "ROTOR_STATUS_ADDR={addr} is not an address such as 127.0.0.1:9090: {e}"
                ))
            })?);
        }
        config.stats_scrape_interval = seconds(&var, "ROTOR_STATS_SCRAPE_SECS")?;
        if let Some(bytes) = var("ROTOR_MAX_REQUEST") {
            config.max_request = bytes.parse().ok().filter(|b| *b > 0).ok_or_else(|| {
                Error::Config(format!("ROTOR_MAX_REQUEST={bytes} is not a size in bytes such as 33554432"))
            })?;
        }
        if let Some(url) = var("ROTOR_NATS_URL") {
            let token = var("ROTOR_NATS_TOKEN");
            let user = var("ROTOR_NATS_USER");
            let nkey = var("ROTOR_NATS_NKEY");
            let creds = var("ROTOR_NATS_CREDS");
            let set = [token.is_some(), user.is_some(), nkey.is_some(), creds.is_some()];
            if set.iter().filter(|s| **s).count() > 1 {
                return Err(Error::Config(
                    "set one of ROTOR_NATS_TOKEN, ROTOR_NATS_USER (with ROTOR_NATS_PASSWORD), ROTOR_NATS_NKEY \
                     and ROTOR_NATS_CREDS, not several"
                        .into(),
                ));
            }
            let auth = if let Some(token) = token {
                NatsAuth::Token(token)
            } else if let Some(user) = user {
                let password = var("ROTOR_NATS_PASSWORD").ok_or_else(|| {
                    Error::Config("ROTOR_NATS_USER is set but ROTOR_NATS_PASSWORD is not".into())
                })?;
                NatsAuth::UserPassword { user, password }
            } else if let Some(nkey) = nkey {
                NatsAuth::NkeyFile(nkey.into())
            } else if let Some(creds) = creds {
                NatsAuth::CredsFile(creds.into())
            } else {
                if var("ROTOR_NATS_PASSWORD").is_some() {
                    return Err(Error::Config(
                        "ROTOR_NATS_PASSWORD is set but ROTOR_NATS_USER is not".into(),
                    ));
                }
                NatsAuth::None
            };
            config.nats = Some(NatsConfig {
                urls: list(&url),
                auth,
                tls_ca: var("ROTOR_NATS_TLS_CA").map(PathBuf::from),
                client_cert: client_certificate(&var, "ROTOR_NATS_TLS_CERT", "ROTOR_NATS_TLS_KEY")?,
                source: Source::Env("ROTOR_NATS_URL"),
            });
        }
        if let Some(endpoints) = var("ROTOR_ETCD_ENDPOINTS") {
            let user = match (var("ROTOR_ETCD_USER"), var("ROTOR_ETCD_PASSWORD")) {
                (Some(u), Some(p)) => Some((u, p)),
                (None, None) => None,
                _ => {
                    return Err(Error::Config(
                        "set both ROTOR_ETCD_USER and ROTOR_ETCD_PASSWORD, or neither".into(),
                    ));
                }
            };
            config.etcd = Some(EtcdConfig {
                endpoints: list(&endpoints),
                user,
                tls_ca: var("ROTOR_ETCD_TLS_CA").map(PathBuf::from),
                client_cert: client_certificate(&var, "ROTOR_ETCD_TLS_CERT", "ROTOR_ETCD_TLS_KEY")?,
                source: Source::Env("ROTOR_ETCD_ENDPOINTS"),
            });
        }
        direct::from_vars(&var, &mut config)?;
        if config.etcd.is_some() && config.nats.is_none() {
            return Err(Error::Config(
                "ROTOR_ETCD_ENDPOINTS is set but ROTOR_NATS_URL is not: discovery without a transport \
                 cannot carry requests; set ROTOR_NATS_URL too"
                    .into(),
            ));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, Error> {
        Config::from_vars(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn nothing_set_is_embedded() {
        let c = config(&[]).unwrap();
        assert!(c.nats.is_none() && c.etcd.is_none());
        assert_eq!(c.lease_ttl, Duration::from_secs(10));
    }

    #[test]
    fn servers_credentials_and_tunables() {
        let c = config(&[
            ("ROTOR_NATS_URL", "nats://a:4222, nats://b:4222"),
            ("ROTOR_NATS_USER", "u"),
            ("ROTOR_NATS_PASSWORD", "p"),
            ("ROTOR_NATS_TLS_CA", "/ca.pem"),
            ("ROTOR_ETCD_ENDPOINTS", "http://e:2379"),
            ("ROTOR_ETCD_USER", "eu"),
            ("ROTOR_ETCD_PASSWORD", "ep"),
            ("ROTOR_LEASE_TTL_SECS", "4"),
            ("ROTOR_REQUEST_TIMEOUT_SECS", "0.5"),
        ])
        .unwrap();
        let nats = c.nats.unwrap();
        assert_eq!(nats.urls, ["nats://a:4222", "nats://b:4222"]);
        assert!(
            matches!(nats.auth, NatsAuth::UserPassword { ref user, ref password } if user == "u" && password == "p")
        );
        assert_eq!(nats.tls_ca.as_deref(), Some(std::path::Path::new("/ca.pem")));
        assert_eq!(nats.source, Source::Env("ROTOR_NATS_URL"));
        let etcd = c.etcd.unwrap();
        assert_eq!(etcd.user, Some(("eu".into(), "ep".into())));
        assert_eq!(c.lease_ttl, Duration::from_secs(4));
        assert_eq!(c.request_timeout, Duration::from_millis(500));
    }

    #[test]
    fn token_and_creds() {
        let c = config(&[("ROTOR_NATS_URL", "nats://a"), ("ROTOR_NATS_TOKEN", "t")]).unwrap();
        assert!(matches!(c.nats.unwrap().auth, NatsAuth::Token(t) if t == "t"));
        let c = config(&[("ROTOR_NATS_URL", "nats://a"), ("ROTOR_NATS_CREDS", "/x.creds")]).unwrap();
        assert!(matches!(c.nats.unwrap().auth, NatsAuth::CredsFile(_)));
    }

    #[test]
    fn nkey_and_client_certificates() {
        let c = config(&[
            ("ROTOR_NATS_URL", "nats://a"),
            ("ROTOR_NATS_NKEY", "/keys/vault.nk"),
            ("ROTOR_NATS_TLS_CERT", "/tls/vault.pem"),
            ("ROTOR_NATS_TLS_KEY", "/tls/vault-key.pem"),
            ("ROTOR_ETCD_ENDPOINTS", "https://e:2379"),
            ("ROTOR_ETCD_TLS_CA", "/tls/ca.pem"),
            ("ROTOR_ETCD_TLS_CERT", "/tls/etcd-client.pem"),
            ("ROTOR_ETCD_TLS_KEY", "/tls/etcd-client-key.pem"),
        ])
        .unwrap();
        let nats = c.nats.unwrap();
        assert!(
            matches!(nats.auth, NatsAuth::NkeyFile(ref p) if p == std::path::Path::new("/keys/vault.nk"))
        );
        assert_eq!(
            nats.client_cert,
            Some(ClientCertificate { cert: "/tls/vault.pem".into(), key: "/tls/vault-key.pem".into() })
        );
        assert!(nats.requires_tls(), "a client certificate implies TLS");
        let etcd = c.etcd.unwrap();
        assert_eq!(etcd.client_cert.unwrap().key, std::path::Path::new("/tls/etcd-client-key.pem"));
        assert_eq!(etcd.tls_ca.as_deref(), Some(std::path::Path::new("/tls/ca.pem")));
    }

    #[test]
    fn a_certificate_without_its_key_or_a_key_without_its_certificate_is_an_error() {
        for (set, missing) in [
            ("ROTOR_NATS_TLS_CERT", "ROTOR_NATS_TLS_KEY"),
            ("ROTOR_NATS_TLS_KEY", "ROTOR_NATS_TLS_CERT"),
            ("ROTOR_ETCD_TLS_CERT", "ROTOR_ETCD_TLS_KEY"),
            ("ROTOR_ETCD_TLS_KEY", "ROTOR_ETCD_TLS_CERT"),
        ] {
            let e =
                config(&[("ROTOR_NATS_URL", "n"), ("ROTOR_ETCD_ENDPOINTS", "https://e"), (set, "/x.pem")])
                    .unwrap_err()
                    .to_string();
            assert!(e.contains(&format!("{set} is set but {missing} is not")), "{e}");
        }
    }

    #[test]
    fn one_nats_credential_at_most() {
        for (a, b) in [("ROTOR_NATS_NKEY", "ROTOR_NATS_CREDS"), ("ROTOR_NATS_TOKEN", "ROTOR_NATS_NKEY")] {
            let e = config(&[("ROTOR_NATS_URL", "n"), (a, "x"), (b, "y")]).unwrap_err().to_string();
            assert!(e.contains("not several"), "{e}");
        }
        let e = config(&[("ROTOR_NATS_URL", "n"), ("ROTOR_NATS_PASSWORD", "p")]).unwrap_err().to_string();
        assert!(e.contains("ROTOR_NATS_USER is not"), "{e}");
    }

    #[test]
    fn urls_lose_their_passwords_and_tokens_when_shown() {
        for (url, shown) in [
            ("nats://h:4222", "nats://h:4222"),
            ("nats://u:p@h:4222", "nats://u:<redacted>@h:4222"),
            ("nats://tok@h:4222", "nats://<redacted>@h:4222"),
            ("tls://u:p:q@h", "tls://u:<redacted>@h"),
            ("u:p@h", "u:<redacted>@h"),
            ("http://h:2379/a@b", "http://h:2379/a@b"),
        ] {
            assert_eq!(redact_url(url), shown);
        }
        let nats = NatsConfig {
            urls: vec!["nats://u:p4ss@h".into(), "nats://h2".into()],
            auth: NatsAuth::Token("t0ken".into()),
            ..NatsConfig::default()
        };
        assert_eq!(nats.display_urls(), "nats://u:<redacted>@h,nats://h2");
        let debug = format!("{nats:?}");
        assert!(!debug.contains("p4ss") && !debug.contains("t0ken"), "{debug}");
        let etcd = EtcdConfig { user: Some(("root".into(), "s3cret".into())), ..EtcdConfig::default() };
        let debug = format!("{etcd:?}");
        assert!(debug.contains("root") && !debug.contains("s3cret"), "{debug}");
    }

    #[test]
    fn contradictions_are_errors_that_name_the_variables() {
        let e = config(&[("ROTOR_ETCD_ENDPOINTS", "http://e:2379")]).unwrap_err().to_string();
        assert!(e.contains("ROTOR_NATS_URL"), "{e}");
        let e = config(&[("ROTOR_NATS_URL", "n"), ("ROTOR_NATS_TOKEN", "t"), ("ROTOR_NATS_USER", "u")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not several"), "{e}");
        let e = config(&[("ROTOR_NATS_URL", "n"), ("ROTOR_NATS_USER", "u")]).unwrap_err().to_string();
        assert!(e.contains("ROTOR_NATS_PASSWORD"), "{e}");
        let e = config(&[("ROTOR_LEASE_TTL_SECS", "1")]).unwrap_err().to_string();
        assert!(e.contains("at least 2"), "{e}");
        let e = config(&[("ROTOR_REQUEST_TIMEOUT_SECS", "soon")]).unwrap_err().to_string();
        assert!(e.contains("ROTOR_REQUEST_TIMEOUT_SECS=soon"), "{e}");
    }
}
