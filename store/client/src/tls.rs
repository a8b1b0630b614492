//! TLS for connections to etcd-API endpoints (and, in keel-store, to peers):
//! the one place that turns a URL and a [`TlsOptions`] into a tonic
//! [`Endpoint`].
//!
//! Rules, as etcdctl's: an `https://` URL is dialled with TLS; a URL without a
//! scheme is dialled with TLS when TLS options are given and in plain text
//! otherwise; an `http://` URL is always plain text. The server's certificate
//! is checked against the CA given (`--cacert`), or the system's roots when
//! none is; [`TlsOptions::insecure_skip_verify`] accepts any certificate
//! (for servers started with `--auto-tls`; etcdctl's
//! `--insecure-skip-tls-verify`), still checking the handshake's signatures.
//! A client certificate and key, when given, are presented to the server.
//!
//! rustls with the ring provider; no OpenSSL.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::{Error, Result};

/// TLS settings of a client: PEM bytes, read once.
#[derive(Clone, Default)]
pub struct TlsOptions {
    /// CA certificates (PEM) that sign the servers' certificates.
    pub ca_pem: Option<Vec<u8>>,
    /// This client's certificate chain (PEM), presented to the server.
    pub cert_pem: Option<Vec<u8>>,
    /// The key of `cert_pem` (PEM).
    pub key_pem: Option<Vec<u8>>,
    /// Accept any server certificate (self-signed `--auto-tls` servers).
    pub insecure_skip_verify: bool,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a key.
        f.debug_struct("TlsOptions")
            .field("ca", &self.ca_pem.is_some())
            .field("cert", &self.cert_pem.is_some())
            .field("key", &self.key_pem.is_some())
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .finish()
    }
}

impl TlsOptions {
    /// Reads etcdctl's `--cacert`, `--cert` and `--key` files. A certificate
    /// needs its key and the other way round.
    pub fn from_files(ca: Option<&Path>, cert: Option<&Path>, key: Option<&Path>) -> Result<Self> {
        if cert.is_some() != key.is_some() {
            return Err(Error::Tls(
                "a client certificate and its key must be given together".into(),
            ));
        }
        let read = |p: Option<&Path>| -> Result<Option<Vec<u8>>> {
            p.map(|p| {
                std::fs::read(p).map_err(|e| Error::Tls(format!("open {}: {e}", p.display())))
            })
            .transpose()
        };
        Ok(TlsOptions {
            ca_pem: read(ca)?,
            cert_pem: read(cert)?,
            key_pem: read(key)?,
            insecure_skip_verify: false,
        })
    }

    /// The same options, accepting any server certificate or not.
    pub fn with_insecure_skip_verify(mut self, skip: bool) -> Self {
        self.insecure_skip_verify = skip;
        self
    }
}

/// `host:port`, `http://host:port` or `https://host:port` as the URL to dial:
/// a bare address gets `https` when TLS options are given, else `http`.
pub fn endpoint_url(e: &str, tls: Option<&TlsOptions>) -> String {
    let e = e.trim().trim_end_matches('/');
    if e.contains("://") {
        e.to_string()
    } else if tls.is_some() {
        format!("https://{e}")
    } else {
        format!("http://{e}")
    }
}

/// A tonic endpoint for `url` (a full URL, see [`endpoint_url`]), with TLS
/// when it is `https://`. The caller adds its timeouts.
pub fn endpoint(url: &str, tls: Option<&TlsOptions>) -> Result<Endpoint> {
    let ep = Endpoint::from_shared(url.to_string())
        .map_err(|e| Error::InvalidEndpoint(url.to_string(), e.to_string()))?;
    if !url.starts_with("https://") {
        return Ok(ep);
    }
    let default = TlsOptions::default();
    let tls = tls.unwrap_or(&default);
    let mut cfg = ClientTlsConfig::new();
    if let (Some(cert), Some(key)) = (&tls.cert_pem, &tls.key_pem) {
        cfg = cfg.identity(Identity::from_pem(cert, key));
    }
    let bad = |e: tonic::transport::Error| Error::Tls(format!("{url}: {e}"));
    if tls.insecure_skip_verify {
        return ep
            .tls_config_with_verifier(cfg, Arc::new(AnyServerCert::new()))
            .map_err(bad);
    }
    cfg = match &tls.ca_pem {
        Some(ca) => cfg.ca_certificate(Certificate::from_pem(ca)),
        None => cfg.with_native_roots(),
    };
    ep.tls_config(cfg).map_err(bad)
}

/// Accepts any server certificate, but still checks that the server holds
/// its key (the handshake signatures), with ring's algorithms.
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl AnyServerCert {
    fn new() -> Self {
        AnyServerCert(Arc::new(rustls::crypto::ring::default_provider()))
    }
}

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_addresses_follow_the_tls_options() {
        let tls = TlsOptions::default();
        assert_eq!(
            endpoint_url("127.0.0.1:2379", None),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            endpoint_url("127.0.0.1:2379", Some(&tls)),
            "https://127.0.0.1:2379"
        );
        assert_eq!(
            endpoint_url("http://127.0.0.1:2379/", Some(&tls)),
            "http://127.0.0.1:2379"
        );
        assert_eq!(endpoint_url("https://h:1", None), "https://h:1");
    }

    #[test]
    fn a_certificate_needs_its_key() {
        let e = TlsOptions::from_files(None, Some(Path::new("/nonexistent")), None).unwrap_err();
        assert!(e.to_string().contains("together"), "{e}");
        let e =
            TlsOptions::from_files(Some(Path::new("/nonexistent/ca.pem")), None, None).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }

    #[tokio::test]
    async fn https_endpoints_get_tls_and_http_ones_do_not() {
        assert!(endpoint("https://127.0.0.1:1", None).is_ok());
        let insecure = TlsOptions::default().with_insecure_skip_verify(true);
        assert!(endpoint("https://127.0.0.1:1", Some(&insecure)).is_ok());
        assert!(endpoint("http://127.0.0.1:1", Some(&insecure)).is_ok());
        assert!(matches!(
            endpoint("http://bad host:1", None),
            Err(Error::InvalidEndpoint(..))
        ));
    }
}
