//! Security end to end, each lock on a real server configured for it: NATS
//! over TLS, with client certificates, nkeys, creds files of an operator
//! setup and per-user permissions; etcd with a password, over TLS and with
//! client certificates. The certificates come from a CA made by the test;
//! the secrets never show in `Debug` output, errors or logs.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use rotor::config::{Config, EtcdConfig, NatsAuth, NatsConfig, Source};
use rotor::prelude::*;
use serde::{Deserialize, Serialize};
use support::secure::{
    Ca, ClientCerts, ConfiguredNats, Operator, TlsEtcd, enable_etcd_auth, nats_tls_block, nkey_user, quoted,
};
use support::{Etcd, Nats};

/// Bounds every wait in this file: a hang fails the test instead.
const WAIT: Duration = Duration::from_secs(20);

/// The NATS service name of [`Vault`], whose subjects the permissions name.
const SERVICE: &str = "test_secure_vault";

#[derive(Default)]
struct Vault {
    calls: Arc<AtomicUsize>,
}

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("never")]
struct Never;

#[rotor::component(namespace = "test.secure")]
impl Vault {
    #[endpoint]
    async fn echo(&self, text: String) -> Result<String, Never> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(text)
    }

    #[endpoint]
    async fn count(&self, n: u64) -> impl Stream<Item = Result<u64, Never>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        futures::stream::iter((0..n).map(Ok))
    }
}

/// Serves a [`Vault`] on `server`, and calls both its endpoints (one
/// unary, one stream) from `client`; through etcd, or through the queue
/// groups of `nats` once it holds the service's subscriptions.
async fn serves_and_calls(
    server: &Runtime,
    client: &Runtime,
    nats: Option<&ConfiguredNats>,
) -> ServeHandle<Vault> {
    serves_and_calls_with(Vault::default(), server, client, nats).await
}

async fn serves_and_calls_with(
    vault: Vault,
    server: &Runtime,
    client: &Runtime,
    nats: Option<&ConfiguredNats>,
) -> ServeHandle<Vault> {
    let handle = server.serve(vault).await.expect("serve");
    if let Some(nats) = nats {
        // `serve` returns once the subscriptions are sent, not once the
        // server has them; another connection's request could come first.
        for endpoint in ["echo", "count"] {
            nats.wait_for_subscription(&format!("{SERVICE}.{endpoint}")).await;
        }
    }
    let vault = Vault::client(client).await.expect("a client");
    vault.core().wait_for_instances_within(WAIT).await.expect("the instance is discovered");
    assert_eq!(vault.echo("sealed".into()).await.expect("a unary call"), "sealed");
    let items: Vec<u64> =
        vault.count(3).await.expect("a stream").map(|item| item.expect("an item")).collect().await;
    assert_eq!(items, [0, 1, 2]);
    handle
}

async fn build(nats: NatsConfig, etcd: Option<EtcdConfig>) -> Result<Runtime, Error> {
    let mut builder = Runtime::builder().nats(nats).connect_timeout(Duration::from_secs(5));
    if let Some(etcd) = etcd {
        builder = builder.etcd(etcd).lease_ttl(Duration::from_secs(3));
    }
    builder.build().await
}

fn refused(result: Result<Runtime, Error>, engine: &str) -> String {
    let err = result.expect_err("the server refuses this client");
    assert!(matches!(&err, Error::Refused { engine: e, .. } if *e == engine), "{err}");
    err.to_string()
}

/// The TLS versions of the connections nats-server holds (`None`: plain).
fn tls_versions(monitor: &str) -> Vec<Option<String>> {
    let json: serde_json::Value = serde_json::from_str(monitor).expect("/connz is JSON");
    json["connections"]
        .as_array()
        .expect("connections")
        .iter()
        .map(|c| c["tls_version"].as_str().map(String::from))
        .collect()
}

// ---------------------------------------------------------------- NATS TLS

#[tokio::test]
async fn a_runtime_that_trusts_the_test_ca_serves_and_calls_over_tls() {
    let ca = Ca::new("rotor test CA");
    let nats = ConfiguredNats::start(&nats_tls_block(&ca, &ca.server("nats"), false));
    let config = NatsConfig { tls_ca: Some(ca.cert.clone()), ..nats.config() };
    let server = build(config.clone(), None).await.unwrap();
    let client = build(config, None).await.unwrap();
    let _served = serves_and_calls(&server, &client, Some(&nats)).await;
    let versions = tls_versions(&nats.connz());
    // The two runtimes of this process, built for the same server, share one connection.
    assert_eq!(versions.len(), 1, "{versions:?}");
    assert!(versions.iter().all(|v| v.as_deref().is_some_and(|v| v.starts_with("1."))), "{versions:?}");
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_is_refused_with_an_error_that_names_rotor_nats_tls_ca() {
    let ca = Ca::new("rotor test CA");
    let nats = ConfiguredNats::start(&nats_tls_block(&ca, &ca.server("nats"), false));

    let err = refused(build(nats.config(), None).await, "NATS");
    assert!(err.contains("ROTOR_NATS_TLS_CA") && err.contains(&nats.url()), "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    let other = Ca::new("another CA");
    let err =
        refused(build(NatsConfig { tls_ca: Some(other.cert.clone()), ..nats.config() }, None).await, "NATS");
    assert!(err.contains(&other.cert.display().to_string()), "{err}");
}

// ----------------------------------------------------- NATS client certs

/// A nats-server that verifies client certificates against `ca`.
fn verifying_nats(ca: &Ca) -> ConfiguredNats {
    ConfiguredNats::start(&nats_tls_block(ca, &ca.server("nats"), true))
}

#[tokio::test]
async fn a_server_and_a_client_with_certificates_from_the_ca_call_each_other_through_a_server_that_verifies_them()
 {
    let ca = Ca::new("rotor test CA");
    let nats = verifying_nats(&ca);
    let with_cert = |name: &str| NatsConfig {
        tls_ca: Some(ca.cert.clone()),
        client_cert: Some(ca.client(name).client_cert()),
        ..nats.config()
    };
    let server = build(with_cert("vault-service"), None).await.unwrap();
    let client = build(with_cert("vault-client"), None).await.unwrap();
    let _served = serves_and_calls(&server, &client, Some(&nats)).await;
    assert_eq!(tls_versions(&nats.connz()).len(), 2);
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused_by_a_server_that_verifies_them() {
    let ca = Ca::new("rotor test CA");
    let nats = verifying_nats(&ca);
    let err =
        refused(build(NatsConfig { tls_ca: Some(ca.cert.clone()), ..nats.config() }, None).await, "NATS");
    assert!(err.contains("ROTOR_NATS_TLS_CERT") && err.contains("ROTOR_NATS_TLS_KEY"), "{err}");

    let stranger_ca = Ca::new("a stranger's CA");
    let stranger = stranger_ca.client("stranger");
    let config = NatsConfig {
        tls_ca: Some(ca.cert.clone()),
        client_cert: Some(stranger.client_cert()),
        ..nats.config()
    };
    let err = refused(build(config, None).await, "NATS");
    assert!(err.contains(&stranger.cert.display().to_string()), "{err}");
}

// ------------------------------------------------------ NATS nkeys, creds

#[tokio::test]
async fn an_nkey_user_serves_and_calls_and_a_seed_the_server_does_not_list_is_refused() {
    let keys = tempfile::tempdir().unwrap();
    let (seed, public) = nkey_user(keys.path(), "vault");
    let nats = ConfiguredNats::start(&format!(
        "authorization {{\n  users: [ {{ nkey: {} }} ]\n}}\n",
        quoted(&public)
    ));
    let config = NatsConfig { auth: NatsAuth::NkeyFile(seed.clone()), ..nats.config() };
    let server = build(config.clone(), None).await.unwrap();
    let client = build(config, None).await.unwrap();
    let _served = serves_and_calls(&server, &client, Some(&nats)).await;

    let (unknown, _) = nkey_user(keys.path(), "unknown");
    let unknown_seed = std::fs::read_to_string(&unknown).unwrap();
    let err =
        refused(build(NatsConfig { auth: NatsAuth::NkeyFile(unknown), ..nats.config() }, None).await, "NATS");
    assert!(err.contains("ROTOR_NATS_NKEY") && !err.contains(unknown_seed.trim()), "{err}");
    let err = refused(build(nats.config(), None).await, "NATS");
    assert!(err.contains("ROTOR_NATS_NKEY"), "{err}");
}

#[tokio::test]
async fn a_seed_file_that_holds_no_seed_is_a_configuration_error_that_does_not_quote_it() {
    let keys = tempfile::tempdir().unwrap();
    let nats = Nats::start();
    let file = keys.path().join("not-a-seed.nk");
    std::fs::write(&file, "hunter2-the-secret\n").unwrap();
    let err = build(NatsConfig { auth: NatsAuth::NkeyFile(file.clone()), ..nats.config() }, None)
        .await
        .expect_err("a configuration error");
    let message = err.to_string();
    assert!(matches!(err, Error::Config(_)), "{message}");
    assert!(message.contains(&file.display().to_string()) && !message.contains("hunter2"), "{message}");
}

#[tokio::test]
async fn a_creds_file_of_an_account_the_server_trusts_serves_and_calls_and_an_unknown_one_is_refused() {
    let operator = Operator::new();
    let nats = ConfiguredNats::start(&operator.server_config());
    let creds = |path| NatsConfig { auth: NatsAuth::CredsFile(path), ..nats.config() };
    let server = build(creds(operator.user_creds("vault-service")), None).await.unwrap();
    let client = build(creds(operator.user_creds("vault-client")), None).await.unwrap();
    let _served = serves_and_calls(&server, &client, Some(&nats)).await;

    let err = refused(build(creds(operator.stranger_creds("stranger")), None).await, "NATS");
    assert!(err.contains("ROTOR_NATS_CREDS"), "{err}");
    let err = build(creds(nats.dir().join("missing.creds")), None).await.expect_err("no such file");
    assert!(matches!(err, Error::Config(_)) && err.to_string().contains("missing.creds"), "{err}");
}

// -------------------------------------------------- NATS permissions

/// The authorization block the book gives: a service user, a client user
/// and an operations user (for `rotor ls`, `describe`, `stats`), each
/// allowed what it needs; every other user gets `default_permissions`:
/// nothing at all.
fn authorization(service: &str) -> String {
    format!(
        r#"authorization {{
  default_permissions: {{
    publish: {{ deny: [">"] }}
    subscribe: {{ deny: [">"] }}
  }}
  users: [
    {{ user: "vault-service", password: "service-pw", permissions: {{
        publish: ["_INBOX.>"]
        subscribe: ["{service}.>", "$SRV.>", "_INBOX.>"]
    }} }}
    {{ user: "vault-client", password: "client-pw", permissions: {{
        publish: ["{service}.>", "_INBOX.>"]
        subscribe: ["_INBOX.>"]
    }} }}
    {{ user: "ops", password: "ops-pw", permissions: {{
        publish: ["$SRV.>", "_INBOX.>"]
        subscribe: ["_INBOX.>"]
    }} }}
    {{ user: "stranger", password: "stranger-pw" }}
  ]
}}
"#
    )
}

fn user(nats: &ConfiguredNats, user: &str, password: &str) -> NatsConfig {
    NatsConfig {
        auth: NatsAuth::UserPassword { user: user.into(), password: password.into() },
        ..nats.config()
    }
}

/// A plain connection whose server errors (permission violations) arrive
/// on the receiver.
async fn watched(nats: &ConfiguredNats, user: &str, password: &str) -> (async_nats::Client, RxErrors) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    let _ = tx.send(e.to_string());
                }
            }
        })
        .connect(nats.url())
        .await
        .unwrap();
    (client, rx)
}

type RxErrors = tokio::sync::mpsc::UnboundedReceiver<String>;

async fn next_error(rx: &mut RxErrors) -> String {
    tokio::time::timeout(WAIT, rx.recv()).await.expect("a server error within the wait").expect("events")
}

#[tokio::test]
async fn a_stranger_without_publish_permission_cannot_call_the_service_while_the_client_user_can() {
    let etcd = Etcd::start();
    let nats = ConfiguredNats::start(&authorization(SERVICE));
    let server = build(user(&nats, "vault-service", "service-pw"), Some(etcd.config())).await.unwrap();
    let client = build(user(&nats, "vault-client", "client-pw"), Some(etcd.config())).await.unwrap();
    let vault = Vault::default();
    let calls = vault.calls.clone();
    let _served = serves_and_calls_with(vault, &server, &client, None).await;
    let answered = calls.load(Ordering::Relaxed);

    // The operations user reaches the micro-service verbs the service answers.
    let ops = async_nats::ConnectOptions::with_user_and_password("ops".into(), "ops-pw".into())
        .connect(nats.url())
        .await
        .unwrap();
    let ping = tokio::time::timeout(WAIT, ops.request(format!("$SRV.PING.{SERVICE}"), "".into()))
        .await
        .expect("a PING reply within the wait")
        .expect("a PING reply");
    assert!(String::from_utf8_lossy(&ping.payload).contains(SERVICE), "{ping:?}");

    // A stranger's runtime finds the instance in etcd, but NATS drops its
    // request: the call times out and the handler never runs.
    let stranger = Runtime::builder()
        .nats(user(&nats, "stranger", "stranger-pw"))
        .etcd(etcd.config())
        .request_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    let vault = Vault::client(&stranger).await.unwrap();
    vault.core().wait_for_instances_within(WAIT).await.unwrap();
    let err = vault.echo("let me in".into()).await.unwrap_err();
    assert!(matches!(err.transport(), Some(TransportError::Timeout { .. })), "{err:?}");
    assert_eq!(calls.load(Ordering::Relaxed), answered, "the stranger's request reached the handler");

    // The server says why, to the stranger: publishing to the service and
    // subscribing to its subjects (to take its requests) are both refused.
    let (raw, mut errors) = watched(&nats, "stranger", "stranger-pw").await;
    raw.publish(format!("{SERVICE}.echo"), "\"x\"".into()).await.unwrap();
    raw.flush().await.unwrap();
    let error = next_error(&mut errors).await;
    assert!(error.contains("Permissions Violation for Publish") && error.contains(SERVICE), "{error}");
    let _taken = raw.subscribe(format!("{SERVICE}.>")).await.unwrap();
    raw.flush().await.unwrap();
    let error = next_error(&mut errors).await;
    assert!(error.contains("Permissions Violation for Subscription") && error.contains(SERVICE), "{error}");

    // And the service, the client and the operations user needed nothing
    // beyond their permissions: the server logged violations of the
    // stranger's alone.
    let log = nats.log();
    let violations: Vec<&str> = log.lines().filter(|l| l.contains("Violation")).collect();
    assert!(!violations.is_empty(), "{log}");
    assert!(violations.iter().all(|l| l.contains("\"stranger\"")), "{violations:#?}");
}

// ------------------------------------------------------- etcd password

#[tokio::test]
async fn an_etcd_user_with_the_right_password_registers_and_discovers() {
    let etcd = Etcd::start();
    enable_etcd_auth(
        &mut etcd.client().await,
        "root-pw",
        &[("rotor", "rotor-pw", &["instances/", "services/"])],
    )
    .await;
    let nats = Nats::start();
    let config = EtcdConfig { user: Some(("rotor".into(), "rotor-pw".into())), ..etcd.config() };
    let server = build(nats.config(), Some(config.clone())).await.unwrap();
    let client = build(nats.config(), Some(config)).await.unwrap();
    let served = serves_and_calls(&server, &client, None).await;

    // What the user registered is there, under its lease, for root to read.
    let mut root = rotor::discovery::etcd_client::Client::connect(
        [etcd.endpoint()],
        Some(rotor::discovery::etcd_client::ConnectOptions::new().with_user("root", "root-pw")),
    )
    .await
    .unwrap();
    let options = rotor::discovery::etcd_client::GetOptions::new().with_prefix().with_keys_only();
    let keys = root.get("instances/test.secure/vault/", Some(options)).await.unwrap();
    assert_eq!(keys.kvs().len(), 2, "one key per endpoint");
    // Shutting down revokes the lease the user took.
    served.shutdown().await;
    server.shutdown().await.unwrap();
    let options = rotor::discovery::etcd_client::GetOptions::new().with_prefix().with_keys_only();
    let keys = root.get("instances/test.secure/vault/", Some(options)).await.unwrap();
    assert!(keys.kvs().is_empty());
}

#[tokio::test]
async fn a_wrong_etcd_password_is_refused_with_an_error_that_names_the_variables_and_not_the_password() {
    let etcd = Etcd::start();
    enable_etcd_auth(
        &mut etcd.client().await,
        "root-pw",
        &[("rotor", "rotor-pw", &["instances/", "services/"])],
    )
    .await;
    let nats = Nats::start();
    let wrong = EtcdConfig {
        user: Some(("rotor".into(), "not-the-password".into())),
        source: Source::Env("ROTOR_ETCD_ENDPOINTS"),
        ..etcd.config()
    };
    let err = refused(build(nats.config(), Some(wrong)).await, "etcd");
    assert!(err.contains("ROTOR_ETCD_USER") && err.contains("ROTOR_ETCD_PASSWORD"), "{err}");
    assert!(err.contains("authentication failed") && !err.contains("not-the-password"), "{err}");

    let err = refused(build(nats.config(), Some(etcd.config())).await, "etcd");
    assert!(err.contains("authentication enabled"), "{err}");
}

// --------------------------------------------------------- etcd TLS

#[tokio::test]
async fn etcd_over_tls_registers_and_discovers_with_the_ca_and_refuses_a_client_without_it() {
    let ca = Ca::new("rotor test CA");
    let etcd = TlsEtcd::start(&ca, ClientCerts::NotAsked);
    let nats = Nats::start();
    let server = build(nats.config(), Some(etcd.config(&ca))).await.unwrap();
    let client = build(nats.config(), Some(etcd.config(&ca))).await.unwrap();
    let _served = serves_and_calls(&server, &client, None).await;

    let untrusting = EtcdConfig { tls_ca: None, ..etcd.config(&ca) };
    let err = refused(build(nats.config(), Some(untrusting)).await, "etcd");
    assert!(err.contains("ROTOR_ETCD_TLS_CA"), "{err}");
}

#[tokio::test]
async fn an_etcd_that_verifies_client_certificates_admits_one_from_the_ca_and_refuses_one_without() {
    let ca = Ca::new("rotor test CA");
    let etcd = TlsEtcd::start(&ca, ClientCerts::Verified);
    let nats = Nats::start();
    let with_cert = EtcdConfig { client_cert: Some(ca.client("rotor").client_cert()), ..etcd.config(&ca) };
    let server = build(nats.config(), Some(with_cert.clone())).await.unwrap();
    let client = build(nats.config(), Some(with_cert)).await.unwrap();
    let _served = serves_and_calls(&server, &client, None).await;

    let err = refused(build(nats.config(), Some(etcd.config(&ca))).await, "etcd");
    assert!(err.contains("ROTOR_ETCD_TLS_CERT"), "{err}");
    let stranger_ca = Ca::new("a stranger's CA");
    let stranger = stranger_ca.client("stranger");
    let foreign = EtcdConfig { client_cert: Some(stranger.client_cert()), ..etcd.config(&ca) };
    let err = refused(build(nats.config(), Some(foreign)).await, "etcd");
    assert!(err.contains(&stranger.cert.display().to_string()), "{err}");
}

#[tokio::test]
async fn etcd_tls_settings_with_a_plain_http_endpoint_are_a_configuration_error() {
    let ca = Ca::new("rotor test CA");
    let nats = Nats::start();
    let config = EtcdConfig {
        endpoints: vec!["http://127.0.0.1:1".into()],
        tls_ca: Some(ca.cert.clone()),
        ..EtcdConfig::default()
    };
    let err = build(nats.config(), Some(config)).await.expect_err("a configuration error");
    assert!(matches!(err, Error::Config(_)) && err.to_string().contains("https://"), "{err}");
}

// ------------------------------------------------- all of it, from env

#[tokio::test]
async fn a_deployment_with_client_certificates_everywhere_runs_from_rotor_variables_alone() {
    let ca = Ca::new("rotor test CA");
    let nats = verifying_nats(&ca);
    let etcd = TlsEtcd::start(&ca, ClientCerts::Verified);
    let env = |name: &str| {
        let cert = ca.client(name);
        let vars: HashMap<&str, String> = [
            ("ROTOR_NATS_URL", nats.url()),
            ("ROTOR_NATS_TLS_CA", ca.cert.display().to_string()),
            ("ROTOR_NATS_TLS_CERT", cert.cert.display().to_string()),
            ("ROTOR_NATS_TLS_KEY", cert.key.display().to_string()),
            ("ROTOR_ETCD_ENDPOINTS", etcd.endpoint()),
            ("ROTOR_ETCD_TLS_CA", ca.cert.display().to_string()),
            ("ROTOR_ETCD_TLS_CERT", cert.cert.display().to_string()),
            ("ROTOR_ETCD_TLS_KEY", cert.key.display().to_string()),
            ("ROTOR_LEASE_TTL_SECS", "3".into()),
        ]
        .into_iter()
        .collect();
        Config::from_vars(|var| vars.get(var).cloned()).unwrap()
    };
    let server = Runtime::builder().config(env("vault-service")).build().await.unwrap();
    let client = Runtime::builder().config(env("vault-client")).build().await.unwrap();
    let _served = serves_and_calls(&server, &client, Some(&nats)).await;

    let half: HashMap<&str, String> =
        [("ROTOR_NATS_URL", nats.url()), ("ROTOR_NATS_TLS_CERT", "/some/cert.pem".to_string())].into();
    let err = Config::from_vars(|var| half.get(var).cloned()).unwrap_err().to_string();
    assert!(err.contains("ROTOR_NATS_TLS_KEY"), "{err}");
}

// ------------------------------------------------------------ secrets

const SECRETS: [&str; 5] = ["tok-3f9a", "nats-pw-77c1", "url-pw-5e2d", "etcd-pw-a0b4", "url-tok-91de"];

fn assert_no_secret(text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} shows in:\n{text}");
    }
}

#[test]
fn debug_output_of_every_configuration_hides_its_secrets() {
    let token = NatsConfig {
        urls: vec!["nats://h:4222".into()],
        auth: NatsAuth::Token(SECRETS[0].into()),
        ..NatsConfig::default()
    };
    let password = NatsConfig {
        urls: vec![format!("nats://u:{}@h:4222", SECRETS[2]), format!("nats://{}@h:4222", SECRETS[4])],
        auth: NatsAuth::UserPassword { user: "vault".into(), password: SECRETS[1].into() },
        tls_ca: Some("/etc/rotor/ca.pem".into()),
        client_cert: Some(rotor::config::ClientCertificate {
            cert: "/etc/rotor/vault.pem".into(),
            key: "/etc/rotor/vault-key.pem".into(),
        }),
        ..NatsConfig::default()
    };
    let etcd = EtcdConfig {
        endpoints: vec!["https://e:2379".into()],
        user: Some(("rotor".into(), SECRETS[3].into())),
        ..EtcdConfig::default()
    };
    for nats in [token, password] {
        let config = Config { nats: Some(nats), etcd: Some(etcd.clone()), ..Config::default() };
        let debug = format!("{config:?} {config:#?}");
        assert_no_secret(&debug);
        assert!(debug.contains("<redacted>"), "{debug}");
    }
    let config = Config {
        nats: Some(NatsConfig {
            auth: NatsAuth::NkeyFile("/etc/rotor/vault.nk".into()),
            ..NatsConfig::default()
        }),
        ..Config::default()
    };
    assert!(format!("{config:?}").contains("/etc/rotor/vault.nk"));
    let shown =
        format!("{:?}", Config::from_vars(|v| (v == "ROTOR_NATS_URL").then(|| "nats://h".into())).unwrap());
    assert!(shown.contains("nats://h"), "{shown}");
}

#[tokio::test]
async fn failed_connections_name_no_secret_in_their_errors() {
    let nats = Nats::start_with_user("vault", "the-right-one");
    let attempts = [
        NatsConfig { auth: NatsAuth::Token(SECRETS[0].into()), ..nats.config() },
        NatsConfig {
            auth: NatsAuth::UserPassword { user: "vault".into(), password: SECRETS[1].into() },
            ..nats.config()
        },
        NatsConfig {
            urls: vec![format!("nats://vault:{}@127.0.0.1:{}", SECRETS[2], nats.port)],
            auth: NatsAuth::None,
            ..nats.config()
        },
        NatsConfig {
            urls: vec![format!("nats://{}@127.0.0.1:{}", SECRETS[4], nats.port)],
            auth: NatsAuth::None,
            ..nats.config()
        },
    ];
    for config in attempts {
        let err = refused(build(config, None).await, "NATS");
        assert_no_secret(&err);
        assert!(err.contains("127.0.0.1"), "{err}");
    }
    // Nothing listens here: the error names the address, without its password.
    let port = support::free_port();
    let config = NatsConfig {
        urls: vec![format!("nats://vault:{}@127.0.0.1:{port}", SECRETS[2])],
        ..NatsConfig::default()
    };
    let err = build(config, None).await.expect_err("nothing listens").to_string();
    assert_no_secret(&err);
    assert!(err.contains(&format!("vault:<redacted>@127.0.0.1:{port}")), "{err}");

    let etcd = Etcd::start();
    enable_etcd_auth(&mut etcd.client().await, "root-pw", &[]).await;
    let wrong = EtcdConfig { user: Some(("root".into(), SECRETS[3].into())), ..etcd.config() };
    let err = refused(build(nats.config(), Some(wrong)).await, "etcd");
    assert_no_secret(&err);
}

/// A writer that keeps what it is given.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// On one thread (the test's runtime is single-threaded), so that the
/// subscriber set for this test sees every event of its connections.
#[tokio::test(flavor = "current_thread")]
async fn nothing_logged_while_connecting_and_failing_shows_a_secret() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _scope = tracing_subscriber::util::SubscriberInitExt::set_default(subscriber);
    // With a single subscriber in the process, tracing asks only the
    // current thread's whether a callsite is wanted, so a callsite that
    // another test's thread reaches first is cached as unwanted for this
    // thread too. A second, idle subscriber makes it ask every one.
    let _second = tracing::Dispatch::new(tracing_subscriber::registry());
    tracing::callsite::rebuild_interest_cache();

    let nats = Nats::start_with_user("vault", SECRETS[1]);
    let etcd = Etcd::start();
    enable_etcd_auth(&mut etcd.client().await, SECRETS[3], &[]).await;
    let good_nats = nats.config();
    let good_etcd = EtcdConfig { user: Some(("root".into(), SECRETS[3].into())), ..etcd.config() };
    let server = build(good_nats.clone(), Some(good_etcd.clone())).await.unwrap();
    let client = build(good_nats.clone(), Some(good_etcd)).await.unwrap();
    let _served = serves_and_calls(&server, &client, None).await;
    let wrong = NatsConfig { auth: NatsAuth::Token(SECRETS[0].into()), ..nats.config() };
    refused(build(wrong, None).await, "NATS");
    let wrong = EtcdConfig { user: Some(("root".into(), "etcd-pw-wrong".into())), ..etcd.config() };
    refused(build(good_nats, Some(wrong)).await, "etcd");

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("CONNECT"), "the capture saw async-nats's trace of CONNECT:\n{logs}");
    assert_no_secret(&logs);
    assert!(!logs.contains("etcd-pw-wrong"));
}
