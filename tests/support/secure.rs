//! Servers configured for security, for tests that run them: a certificate
//! authority made by the test (rcgen), nats-server from a configuration
//! file (TLS, client certificates, nkeys, an operator/account JWT setup,
//! per-user permissions), etcd over TLS with or without client
//! certificates, and etcd authentication switched on through its API.
//!
//! Each server listens on free loopback ports, keeps its files in a
//! temporary directory and is killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rotor::config::{ClientCertificate, EtcdConfig, NatsConfig};
use rotor::discovery::etcd_client;

use super::{free_port, http_get, require, wait_until};

/// A certificate authority of the test's own, with its certificate in a
/// PEM file that servers and clients are told to trust.
pub struct Ca {
    dir: tempfile::TempDir,
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA's certificate (PEM).
    pub cert: PathBuf,
}

/// A certificate and its key, PEM files signed by a [`Ca`].
#[derive(Clone, Debug)]
pub struct Signed {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Signed {
    /// As the client certificate of a Rotor configuration.
    pub fn client_cert(&self) -> ClientCertificate {
        ClientCertificate { cert: self.cert.clone(), key: self.key.clone() }
    }
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let cert = dir.path().join("ca.pem");
        std::fs::write(&cert, issuer.pem()).unwrap();
        Ca { dir, issuer, cert }
    }

    fn sign(&self, name: &str, sans: Vec<String>, usages: Vec<ExtendedKeyUsagePurpose>) -> Signed {
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = usages;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let signed = Signed {
            cert: self.dir.path().join(format!("{name}.pem")),
            key: self.dir.path().join(format!("{name}-key.pem")),
        };
        std::fs::write(&signed.cert, cert.pem()).unwrap();
        std::fs::write(&signed.key, key.serialize_pem()).unwrap();
        signed
    }

    /// A server certificate for 127.0.0.1 and localhost.
    pub fn server(&self, name: &str) -> Signed {
        self.sign(
            name,
            vec!["127.0.0.1".into(), "localhost".into()],
            vec![ExtendedKeyUsagePurpose::ServerAuth],
        )
    }

    /// A certificate for 127.0.0.1 and localhost that serves and calls
    /// alike: a direct-plane process's.
    pub fn peer(&self, name: &str) -> Signed {
        self.sign(
            name,
            vec!["127.0.0.1".into(), "localhost".into()],
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        )
    }

    /// A client certificate whose common name is `name`.
    pub fn client(&self, name: &str) -> Signed {
        self.sign(name, Vec::new(), vec![ExtendedKeyUsagePurpose::ClientAuth])
    }
}

/// A string quoted for a nats-server configuration file.
pub fn quoted(s: impl AsRef<str>) -> String {
    serde_json::to_string(s.as_ref()).unwrap()
}

/// A `tls { }` block of a nats-server configuration: `server`'s certificate,
/// and with `verify_clients` every client must present one signed by `ca`.
pub fn nats_tls_block(ca: &Ca, server: &Signed, verify_clients: bool) -> String {
    format!(
        "tls {{\n  cert_file: {}\n  key_file: {}\n  ca_file: {}\n  verify: {verify_clients}\n  timeout: 5\n}}\n",
        quoted(server.cert.to_string_lossy()),
        quoted(server.key.to_string_lossy()),
        quoted(ca.cert.to_string_lossy()),
    )
}

/// A nats-server started from a configuration file of the test's making.
pub struct ConfiguredNats {
    pub port: u16,
    monitor_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl ConfiguredNats {
    /// Starts nats-server with `config` (blocks such as [`nats_tls_block`],
    /// `authorization { }`, an operator's), listening on loopback.
    pub fn start(config: &str) -> ConfiguredNats {
        let binary = require("nats-server", "nats-server");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (port, monitor_port) = (free_port(), free_port());
        let file = dir.path().join("nats.conf");
        let log = dir.path().join("nats.log");
        std::fs::write(
            &file,
            format!(
                "listen: \"127.0.0.1:{port}\"\nhttp: \"127.0.0.1:{monitor_port}\"\nlog_file: {}\n{config}",
                quoted(log.to_string_lossy())
            ),
        )
        .unwrap();
        let mut child = Command::new(&binary)
            .arg("-c")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let ready = || matches!(http_get(monitor_port, "/healthz"), Some((200, _)));
        let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_until("nats-server", &mut child, ready)
        }));
        if let Err(panic) = started {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("nats-server's log:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
            std::panic::resume_unwind(panic);
        }
        ConfiguredNats { port, monitor_port, dir, child: Some(child) }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Its URL and nothing else: no credentials, no TLS.
    pub fn config(&self) -> NatsConfig {
        NatsConfig { urls: vec![self.url()], ..NatsConfig::default() }
    }

    /// The directory of its files, for the test's own (creds, seeds).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's `/connz` monitoring answer: its client connections.
    pub fn connz(&self) -> String {
        http_get(self.monitor_port, "/connz").expect("nats-server monitoring answers").1
    }

    /// Waits until some connection holds a subscription to `subject`;
    /// asynchronously, so that a runtime on the same thread can send it.
    pub async fn wait_for_subscription(&self, subject: &str) {
        let start = std::time::Instant::now();
        loop {
            let (_, body) =
                http_get(self.monitor_port, "/connz?subs=1").expect("nats-server monitoring answers");
            let json: serde_json::Value = serde_json::from_str(&body).expect("/connz is JSON");
            let held = json["connections"].as_array().into_iter().flatten().any(|c| {
                c["subscriptions_list"].as_array().into_iter().flatten().any(|s| s.as_str() == Some(subject))
            });
            if held {
                return;
            }
            assert!(start.elapsed() < std::time::Duration::from_secs(20), "nobody subscribed to {subject}");
            // Only the monitoring endpoint tells: poll it.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// What the server has logged so far (it writes each line as it goes).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }
}

impl Drop for ConfiguredNats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An nkey seed in a file of `dir`, and its public key (`U...`): what a
/// nats-server `authorization { users: [{ nkey: U... }] }` names.
pub fn nkey_user(dir: &Path, name: &str) -> (PathBuf, String) {
    let user = nkeys::KeyPair::new_user();
    let path = dir.join(format!("{name}.nk"));
    std::fs::write(&path, format!("{}\n", user.seed().unwrap())).unwrap();
    (path, user.public_key())
}

/// A NATS operator with one account, as `nsc` would make them: JWTs
/// signed with nkeys, the account preloaded into the server's memory
/// resolver, and users issued by the account into `.creds` files.
pub struct Operator {
    operator: nkeys::KeyPair,
    account: nkeys::KeyPair,
    dir: tempfile::TempDir,
}

/// A JWT in the encoding nats-server reads: `ed25519-nkey` signature by
/// `issuer` over the base64url header and claims.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let issued_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = serde_json::json!({
        // No "jti": nsc's is a hash of the claims, which nats-server does
        // not check, and the memory resolver revokes nothing by it.
        "iat": issued_at,
        "iss": issuer.public_key(),
        "sub": subject,
        "name": name,
        "nats": nats,
    });
    let payload = b64.encode(claims.to_string());
    let signed = format!("{header}.{payload}");
    let signature = issuer.sign(signed.as_bytes()).unwrap();
    format!("{signed}.{}", b64.encode(signature))
}

impl Operator {
    pub fn new() -> Operator {
        Operator {
            operator: nkeys::KeyPair::new_operator(),
            account: nkeys::KeyPair::new_account(),
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// The nats-server configuration of operator mode: the operator's JWT
    /// and the account's, preloaded.
    pub fn server_config(&self) -> String {
        let operator_jwt = jwt(
            &self.operator,
            &self.operator.public_key(),
            "rotor-test-operator",
            serde_json::json!({ "type": "operator", "version": 2 }),
        );
        let account_jwt = jwt(
            &self.operator,
            &self.account.public_key(),
            "rotor-test-account",
            serde_json::json!({
                // Unset limits would be zero: no connection at all.
                "limits": {
                    "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                    "wildcards": true, "conn": -1, "leaf": -1
                },
                "default_permissions": { "pub": {}, "sub": {} },
                "type": "account",
                "version": 2
            }),
        );
        let operator_file = self.dir.path().join("operator.jwt");
        std::fs::write(&operator_file, &operator_jwt).unwrap();
        format!(
            "operator: {}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {}\n}}\n",
            quoted(operator_file.to_string_lossy()),
            self.account.public_key(),
            quoted(account_jwt)
        )
    }

    /// A user of the account, in a `.creds` file (its JWT and nkey seed).
    pub fn user_creds(&self, name: &str) -> PathBuf {
        let user = nkeys::KeyPair::new_user();
        let user_jwt = jwt(
            &self.account,
            &user.public_key(),
            name,
            serde_json::json!({
                "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                "type": "user", "version": 2
            }),
        );
        let path = self.dir.path().join(format!("{name}.creds"));
        std::fs::write(
            &path,
            format!(
                "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
                 ************************* IMPORTANT *************************\n\
                 NKEY Seed printed below can be used to sign and prove identity.\n\
                 NKEYs are sensitive and should be treated as secrets.\n\n\
                 -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n\n\
                 *************************************************************\n",
                user.seed().unwrap()
            ),
        )
        .unwrap();
        path
    }

    /// A user issued by another account, one the server does not know.
    pub fn stranger_creds(&self, name: &str) -> PathBuf {
        let other = Operator::new();
        let path = other.user_creds(name);
        let kept = self.dir.path().join(format!("{name}.creds"));
        std::fs::copy(path, &kept).unwrap();
        kept
    }
}

/// How an etcd over TLS treats its clients.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ClientCerts {
    /// Any client may connect over TLS.
    NotAsked,
    /// `--client-cert-auth`: only a client with a certificate signed by
    /// the CA (`--trusted-ca-file`).
    Verified,
}

/// A single-member etcd serving its clients over TLS, with a certificate
/// signed by `ca`. Its readiness is read on a plain-HTTP metrics port.
pub struct TlsEtcd {
    pub client_port: u16,
    metrics_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl TlsEtcd {
    pub fn start(ca: &Ca, client_certs: ClientCerts) -> TlsEtcd {
        let binary = require("etcd", "etcd-server");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let server = ca.server("etcd");
        let (client_port, peer_port, metrics_port) = (free_port(), free_port(), free_port());
        let client = format!("https://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let mut args = vec![
            "--name=rotor-test".to_string(),
            format!("--data-dir={}", dir.path().join("etcd").display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=rotor-test={peer}"),
            format!("--listen-metrics-urls=http://127.0.0.1:{metrics_port}"),
            format!("--cert-file={}", server.cert.display()),
            format!("--key-file={}", server.key.display()),
            "--log-level=error".to_string(),
        ];
        if client_certs == ClientCerts::Verified {
            args.push(format!("--trusted-ca-file={}", ca.cert.display()));
            args.push("--client-cert-auth".to_string());
        }
        let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
        let mut child = Command::new(&binary)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let ready = || matches!(http_get(metrics_port, "/health"), Some((200, body)) if body.contains("\"health\":\"true\""));
        let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_until("etcd over TLS", &mut child, ready)
        }));
        if let Err(panic) = started {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!(
                "etcd's log:\n{}",
                std::fs::read_to_string(dir.path().join("etcd.log")).unwrap_or_default()
            );
            std::panic::resume_unwind(panic);
        }
        TlsEtcd { client_port, metrics_port, dir, child: Some(child) }
    }

    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.client_port)
    }

    /// Its endpoint, trusting `ca`; no client certificate.
    pub fn config(&self, ca: &Ca) -> EtcdConfig {
        EtcdConfig {
            endpoints: vec![self.endpoint()],
            tls_ca: Some(ca.cert.clone()),
            ..EtcdConfig::default()
        }
    }
}

impl Drop for TlsEtcd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Switches authentication on in the etcd that `admin` reaches: a `root`
/// user with `root_password`, and for each `(user, password, prefix)` a
/// user whose role may read and write keys under `prefix` and nothing else.
pub async fn enable_etcd_auth(
    admin: &mut etcd_client::Client,
    root_password: &str,
    users: &[(&str, &str, &[&str])],
) {
    admin.role_add("root").await.expect("add the root role");
    admin.user_add("root", root_password, None).await.expect("add the root user");
    admin.user_grant_role("root", "root").await.expect("grant root its role");
    for (user, password, prefixes) in users {
        let role = format!("{user}-role");
        admin.role_add(role.as_str()).await.expect("add a role");
        for prefix in *prefixes {
            let permission = etcd_client::Permission::read_write(*prefix).with_prefix();
            admin.role_grant_permission(role.as_str(), permission).await.expect("grant the role its prefix");
        }
        admin.user_add(*user, *password, None).await.expect("add a user");
        admin.user_grant_role(*user, role.as_str()).await.expect("grant the user its role");
    }
    admin.auth_enable().await.expect("enable authentication");
}
