//! Configuration: from `ROTOR_*` environment variables or a builder.
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `ROTOR_NATS_URL` | NATS server(s), comma-separated; set: NATS transport | unset: embedded |
//! | `ROTOR_NATS_TOKEN` | NATS token authentication | |
//! | `ROTOR_NATS_USER`, `ROTOR_NATS_PASSWORD` | NATS user/password authentication | |
//! | `ROTOR_NATS_CREDS` | NATS credentials file (JWT + nkey) | |
//! | `ROTOR_NATS_TLS_CA` | PEM file of the CA that signed the NATS server's certificate | |
//! | `ROTOR_ETCD_ENDPOINTS` | etcd endpoints, comma-separated; set: etcd discovery | unset: no discovery |
//! | `ROTOR_ETCD_USER`, `ROTOR_ETCD_PASSWORD` | etcd authentication | |
//! | `ROTOR_ETCD_TLS_CA` | PEM file of the CA that signed etcd's certificate | |
//! | `ROTOR_LEASE_TTL_SECS` | discovery lease time-to-live | 10 |
//! | `ROTOR_CONNECT_TIMEOUT_SECS` | how long to try to reach a server at start-up | 5 |
//! | `ROTOR_REQUEST_TIMEOUT_SECS` | default call timeout | 30 |
//! | `ROTOR_STATUS_ADDR` | address of the status server (`/metrics`, `/health`, `/live`) | none |
//! | `ROTOR_STATS_SCRAPE_SECS` | interval of the `$SRV.STATS` scrape into `rotor_nats_service_*` | off |
//!
//! NATS without etcd is the static mode: calls go to queue groups, with no
//! discovery. etcd without NATS is an error: nothing would carry requests.

use std::path::PathBuf;
use std::time::Duration;

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
}

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
        }
    }
}

/// How to reach NATS.
#[derive(Clone, Debug, Default)]
pub struct NatsConfig {
    /// Server URLs, such as `nats://127.0.0.1:4222`.
    pub urls: Vec<String>,
    /// Authentication.
    pub auth: NatsAuth,
    /// CA certificate (PEM file) for TLS.
    pub tls_ca: Option<PathBuf>,
    /// Where the URL came from, for error messages.
    pub source: Source,
}

/// NATS authentication.
#[derive(Clone, Debug, Default)]
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
    /// A credentials file (JWT and nkey seed).
    CredsFile(PathBuf),
}

/// How to reach etcd.
#[derive(Clone, Debug, Default)]
pub struct EtcdConfig {
    /// Endpoints, such as `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// User and password.
    pub user: Option<(String, String)>,
    /// CA certificate (PEM file) for TLS.
    pub tls_ca: Option<PathBuf>,
    /// Where the endpoints came from, for error messages.
    pub source: Source,
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
        if let Some(url) = var("ROTOR_NATS_URL") {
            let auth = match (var("ROTOR_NATS_TOKEN"), var("ROTOR_NATS_USER"), var("ROTOR_NATS_CREDS")) {
                (Some(token), None, None) => NatsAuth::Token(token),
                (None, Some(user), None) => {
                    let password = var("ROTOR_NATS_PASSWORD").ok_or_else(|| {
                        Error::Config("ROTOR_NATS_USER is set but ROTOR_NATS_PASSWORD is not".into())
                    })?;
                    NatsAuth::UserPassword { user, password }
                }
                (None, None, Some(creds)) => NatsAuth::CredsFile(creds.into()),
                (None, None, None) => NatsAuth::None,
                _ => {
                    return Err(Error::Config(
                        "set one of ROTOR_NATS_TOKEN, ROTOR_NATS_USER (with ROTOR_NATS_PASSWORD) and \
                         ROTOR_NATS_CREDS, not several"
                            .into(),
                    ));
                }
            };
            config.nats = Some(NatsConfig {
                urls: list(&url),
                auth,
                tls_ca: var("ROTOR_NATS_TLS_CA").map(PathBuf::from),
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
                source: Source::Env("ROTOR_ETCD_ENDPOINTS"),
            });
        }
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
