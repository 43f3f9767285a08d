//! Mutual TLS on the direct plane (rustls): every process presents its
//! certificate, signed by the deployment's CA, both ways. A server that
//! asked NATS for credentials thus never takes a call from a caller it
//! cannot name.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, RootCertStore};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::Error;
use crate::engine::config::DirectTls;

/// The server side: the certificate it presents, the CA callers' must be
/// signed by.
#[derive(Clone)]
pub(crate) struct Acceptor(TlsAcceptor);

/// The calling side: the CA servers' certificates must be signed by, the
/// certificate it presents.
#[derive(Clone)]
pub(crate) struct Connector(TlsConnector);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn bad(what: &str, path: &Path, setting: &str, detail: impl std::fmt::Display) -> Error {
    Error::Config(format!("{what} {} ({setting}): {detail}", path.display()))
}

fn roots(tls: &DirectTls) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&tls.ca)
        .map_err(|e| bad("cannot read the direct plane's CA", &tls.ca, "ROTOR_TCP_TLS_CA", e))?;
    for cert in certs {
        let cert =
            cert.map_err(|e| bad("cannot read the direct plane's CA", &tls.ca, "ROTOR_TCP_TLS_CA", e))?;
        roots.add(cert).map_err(|e| bad("the direct plane's CA", &tls.ca, "ROTOR_TCP_TLS_CA", e))?;
    }
    if roots.is_empty() {
        return Err(bad("the direct plane's CA", &tls.ca, "ROTOR_TCP_TLS_CA", "no certificate in it"));
    }
    Ok(roots)
}

fn identity(tls: &DirectTls) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
    let chain: Vec<_> = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| bad("cannot read this process's certificate", &tls.cert, "ROTOR_TCP_TLS_CERT", e))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| bad("cannot read this process's key", &tls.key, "ROTOR_TCP_TLS_KEY", e))?;
    Ok((chain, key))
}

impl Acceptor {
    pub(crate) fn new(tls: &DirectTls) -> Result<Self, Error> {
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots(tls)?), provider())
                .build()
                .map_err(|e| bad("the direct plane's CA", &tls.ca, "ROTOR_TCP_TLS_CA", e))?;
        let (chain, key) = identity(tls)?;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| bad("this process's certificate and key", &tls.cert, "ROTOR_TCP_TLS_CERT", e))?;
        Ok(Acceptor(TlsAcceptor::from(Arc::new(config))))
    }

    pub(crate) async fn accept(
        &self,
        socket: TcpStream,
    ) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
        self.0.accept(socket).await
    }
}

impl Connector {
    pub(crate) fn new(tls: &DirectTls) -> Result<Self, Error> {
        let (chain, key) = identity(tls)?;
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(e.to_string()))?
            .with_root_certificates(roots(tls)?)
            .with_client_auth_cert(chain, key)
            .map_err(|e| bad("this process's certificate and key", &tls.cert, "ROTOR_TCP_TLS_CERT", e))?;
        Ok(Connector(TlsConnector::from(Arc::new(config))))
    }

    /// Opens TLS over `socket` to `host`, whose certificate must name it.
    pub(crate) async fn connect(
        &self,
        host: &str,
        socket: TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        self.0.connect(name, socket).await
    }
}
