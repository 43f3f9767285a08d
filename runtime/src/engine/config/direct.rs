//! The settings of the direct plane: where a serving runtime listens and
//! what it advertises, its mutual TLS, and which plane a client calls over.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{Config, NatsAuth, NatsConfig};
use crate::Error;

/// Where a serving runtime's direct plane listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectConfig {
    /// The address to bind (`ROTOR_TCP_ADDR`), such as `10.0.0.5:7000`;
    /// port 0 takes a free one.
    pub bind: SocketAddr,
    /// What instance records advertise (`ROTOR_TCP_ADVERTISE`): a host, or
    /// `host:port` when a proxy or NAT maps the port. Required when `bind`
    /// is an unspecified address (`0.0.0.0`), which no one else can dial.
    pub advertise: Option<String>,
}

/// Mutual TLS on the direct plane: every process presents `cert` (with
/// `key`), and accepts only peers whose certificate `ca` signed. The same
/// settings serve a runtime's listener and its calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectTls {
    /// The CA (PEM) that signs every process's certificate
    /// (`ROTOR_TCP_TLS_CA`; `ROTOR_NATS_TLS_CA` when unset).
    pub ca: PathBuf,
    /// This process's certificate (PEM), which must name the advertised
    /// host (`ROTOR_TCP_TLS_CERT`).
    pub cert: PathBuf,
    /// Its private key (PEM; `ROTOR_TCP_TLS_KEY`).
    pub key: PathBuf,
}

/// Which plane a client sends its calls over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Plane {
    /// Straight to the instance when its record advertises a direct
    /// address and it can be reached, over NATS otherwise. The default:
    /// it halves the hops of a call and keeps calls going while NATS is
    /// down, and costs nothing where no server listens directly.
    #[default]
    Direct,
    /// Always over NATS (`ROTOR_PLANE=nats`): for a network where only the
    /// broker is reachable, or to see every call in NATS's own tools.
    Nats,
}

/// Reads the direct plane's variables into `config`.
pub(super) fn from_vars(var: &impl Fn(&str) -> Option<String>, config: &mut Config) -> Result<(), Error> {
    if let Some(addr) = var("ROTOR_TCP_ADDR") {
        let bind = addr.parse().map_err(|e| {
            Error::Config(format!("ROTOR_TCP_ADDR={addr} is not an address such as 10.0.0.5:7000: {e}"))
        })?;
        config.direct = Some(DirectConfig { bind, advertise: var("ROTOR_TCP_ADVERTISE") });
    } else if var("ROTOR_TCP_ADVERTISE").is_some() {
        return Err(Error::Config("ROTOR_TCP_ADVERTISE is set but ROTOR_TCP_ADDR is not".into()));
    }
    if let Some(bytes) = var("ROTOR_TCP_MAX_PAYLOAD") {
        config.direct_max_payload = bytes.parse().ok().filter(|b| *b > 0).ok_or_else(|| {
            Error::Config(format!("ROTOR_TCP_MAX_PAYLOAD={bytes} is not a size in bytes such as 67108864"))
        })?;
    }
    let ca = var("ROTOR_TCP_TLS_CA").or_else(|| var("ROTOR_NATS_TLS_CA"));
    config.direct_tls = match (var("ROTOR_TCP_TLS_CERT"), var("ROTOR_TCP_TLS_KEY"), ca) {
        (Some(cert), Some(key), Some(ca)) => {
            Some(DirectTls { ca: ca.into(), cert: cert.into(), key: key.into() })
        }
        (None, None, _) => None,
        (Some(_), Some(_), None) => {
            return Err(Error::Config(
                "ROTOR_TCP_TLS_CERT and ROTOR_TCP_TLS_KEY are set but no CA is: set ROTOR_TCP_TLS_CA (or \
                 ROTOR_NATS_TLS_CA) to the CA that signs every process's certificate"
                    .into(),
            ));
        }
        _ => {
            return Err(Error::Config(
                "set both ROTOR_TCP_TLS_CERT and ROTOR_TCP_TLS_KEY, or neither".into(),
            ));
        }
    };
    config.plane = match var("ROTOR_PLANE").as_deref() {
        None | Some("direct") => Plane::Direct,
        Some("nats") => Plane::Nats,
        Some(other) => {
            return Err(Error::Config(format!("ROTOR_PLANE={other} is neither `direct` nor `nats`")));
        }
    };
    Ok(())
}

/// `Err` when the direct plane would listen open beside a NATS that asks
/// for credentials or TLS: anyone who reaches the port could then call
/// what the broker guards.
pub(crate) fn check_secured(config: &Config) -> Result<(), Error> {
    let (Some(direct), None) = (&config.direct, &config.direct_tls) else { return Ok(()) };
    let Some(nats) = &config.nats else { return Ok(()) };
    if !secured(nats) {
        return Ok(());
    }
    Err(Error::Config(format!(
        "the direct plane would listen on {} without TLS while NATS asks for credentials or TLS, so \
         anyone who reaches the port could call what the broker guards: set ROTOR_TCP_TLS_CERT, \
         ROTOR_TCP_TLS_KEY and ROTOR_TCP_TLS_CA (mutual TLS, DirectTls), or unset ROTOR_TCP_ADDR",
        direct.bind
    )))
}

fn secured(nats: &NatsConfig) -> bool {
    nats.auth != NatsAuth::None
        || nats.tls_ca.is_some()
        || nats.client_cert.is_some()
        || nats.urls.iter().any(|u| u.starts_with("tls://") || u.contains('@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, Error> {
        Config::from_vars(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn the_direct_plane_is_read_from_its_variables() {
        let c = config(&[
            ("ROTOR_NATS_URL", "nats://a"),
            ("ROTOR_TCP_ADDR", "0.0.0.0:7000"),
            ("ROTOR_TCP_ADVERTISE", "worker-3"),
            ("ROTOR_TCP_TLS_CERT", "/c.pem"),
            ("ROTOR_TCP_TLS_KEY", "/k.pem"),
            ("ROTOR_NATS_TLS_CA", "/ca.pem"),
            ("ROTOR_PLANE", "nats"),
            ("ROTOR_TCP_MAX_PAYLOAD", "1048576"),
        ])
        .unwrap();
        assert_eq!(c.direct_max_payload, 1 << 20);
        let direct = c.direct.unwrap();
        assert_eq!(direct.bind, "0.0.0.0:7000".parse().unwrap());
        assert_eq!(direct.advertise.as_deref(), Some("worker-3"));
        assert_eq!(c.direct_tls.unwrap().ca, PathBuf::from("/ca.pem"), "the NATS CA when none of its own");
        assert_eq!(c.plane, Plane::Nats);
        assert_eq!(config(&[]).unwrap().plane, Plane::Direct, "direct by default");
        for bad in [
            &[("ROTOR_TCP_ADDR", "nowhere")][..],
            &[("ROTOR_TCP_ADVERTISE", "h")],
            &[("ROTOR_TCP_TLS_CERT", "/c.pem")],
            &[("ROTOR_TCP_TLS_CERT", "/c.pem"), ("ROTOR_TCP_TLS_KEY", "/k.pem")],
            &[("ROTOR_PLANE", "carrier-pigeon")],
            &[("ROTOR_TCP_MAX_PAYLOAD", "64MiB")],
            &[("ROTOR_TCP_MAX_PAYLOAD", "0")],
        ] {
            assert!(matches!(config(bad), Err(Error::Config(_))), "{bad:?}");
        }
    }

    #[test]
    fn an_open_direct_plane_beside_a_nats_with_credentials_is_refused_with_what_to_set() {
        let open = [("ROTOR_NATS_URL", "nats://a"), ("ROTOR_TCP_ADDR", "127.0.0.1:0")];
        assert!(check_secured(&config(&open).unwrap()).is_ok(), "NATS is open too");
        for guard in [("ROTOR_NATS_TOKEN", "t"), ("ROTOR_NATS_TLS_CA", "/ca.pem")] {
            let c = config(&[open[0], open[1], guard]).unwrap();
            let e = check_secured(&c).unwrap_err().to_string();
            assert!(e.contains("ROTOR_TCP_TLS_CERT") && e.contains("unset ROTOR_TCP_ADDR"), "{e}");
        }
        let c = config(&[("ROTOR_NATS_URL", "nats://u:p@a"), open[1]]).unwrap();
        assert!(check_secured(&c).is_err(), "credentials in the URL");
    }
}
