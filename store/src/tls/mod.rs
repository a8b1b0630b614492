//! TLS on the client and peer ports, with etcd 3.4's flags and rules; rustls
//! with the ring provider (no OpenSSL).
//!
//! - Flags ([`TlsFlags`]): `--cert-file`, `--key-file`, `--client-cert-auth`,
//!   `--trusted-ca-file`, `--auto-tls` for the client port and the same with
//!   `--peer-` for the peer port. They are checked with the URLs in
//!   [`TlsFlags::into_settings`]: an `https://` listen URL without a
//!   certificate and key (nor auto-tls) is refused at start-up with etcd's
//!   message; `--client-cert-auth` needs `--trusted-ca-file` (keel's rule: etcd
//!   would fall back to the system's roots); `https://` peers are verified
//!   with `--peer-trusted-ca-file`, or the system's roots without it (as etcd).
//!   Certificates given for `http://` listeners are ignored with a warning, as
//!   etcd does.
//! - [`Security::load`] reads the files once at start-up (or makes the
//!   self-signed ones of `--auto-tls`, see [`auto`]) and builds the rustls
//!   server configs and the peer [`Dialer`].
//! - Serving ([`serve`]): a listener marked `https` completes a TLS handshake
//!   before tonic sees the connection (ALPN `h2` and `http/1.1`, so
//!   `/health`, `/metrics` and `/version` are served over the same TLS); a
//!   failed handshake is logged as "rejected connection" with the remote
//!   address, as etcd logs it.
//! - With `--client-cert-auth` (`--peer-client-cert-auth`) a client (peer) must
//!   present a certificate signed by the trusted CA, or its handshake fails;
//!   as in etcd 3.4, `--trusted-ca-file` (`--peer-trusted-ca-file`) alone
//!   requires it too.
//!   [`common_name`] gives a request's client certificate Common Name (etcd
//!   uses it as the user name when auth is on).
//! - Dialling peers ([`Dialer`]): every peer client (Raft transport, lease and
//!   membership forwarding, the corruption check, joining) builds its
//!   endpoint here: the peer certificate is the client identity, the peer CA
//!   is the root; with `--peer-auto-tls` the peers' self-signed certificates
//!   are accepted without verification (etcd's InsecureSkipVerify).
//!
//! - [`certs`] is `keel cert`, a small CA for trying TLS out.
//!
//! Left out: certificate revocation lists (`--client-crl-file`), cipher
//! suite flags, reloading certificates without a restart.

pub mod auto;
pub mod certs;
pub mod serve;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use keel_client::tls::TlsOptions;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

pub use serve::{serve, LaneHandler, Port};

use crate::error::{Error, Result};

/// The TLS flags of `keel store` / `keel server` (etcd's names).
#[derive(Args, Debug, Clone, Default)]
pub struct TlsFlags {
    /// Path to the client server TLS cert file.
    #[arg(long, env = "KEEL_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    /// Path to the client server TLS key file.
    #[arg(long, env = "KEEL_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Enable client cert authentication (clients need a certificate signed by --trusted-ca-file).
    #[arg(
        long,
        env = "KEEL_CLIENT_CERT_AUTH",
        default_value_t = false,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub client_cert_auth: bool,
    /// Path to the client server TLS trusted CA cert file.
    #[arg(long, env = "KEEL_TRUSTED_CA_FILE")]
    pub trusted_ca_file: Option<PathBuf>,
    /// Client TLS using generated certificates (under <data-dir>/fixtures/client).
    #[arg(
        long,
        env = "KEEL_AUTO_TLS",
        default_value_t = false,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub auto_tls: bool,
    /// Path to the peer server TLS cert file.
    #[arg(long, env = "KEEL_PEER_CERT_FILE")]
    pub peer_cert_file: Option<PathBuf>,
    /// Path to the peer server TLS key file.
    #[arg(long, env = "KEEL_PEER_KEY_FILE")]
    pub peer_key_file: Option<PathBuf>,
    /// Enable peer client cert authentication (peers need a certificate signed by --peer-trusted-ca-file).
    #[arg(
        long,
        env = "KEEL_PEER_CLIENT_CERT_AUTH",
        default_value_t = false,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub peer_client_cert_auth: bool,
    /// Path to the peer server TLS trusted CA file.
    #[arg(long, env = "KEEL_PEER_TRUSTED_CA_FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Peer TLS using self-generated certificates (under <data-dir>/fixtures/peer).
    #[arg(
        long,
        env = "KEEL_PEER_AUTO_TLS",
        default_value_t = false,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub peer_auto_tls: bool,
}

/// The TLS settings of one port, checked against its URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortSettings {
    /// Certificate and key files, both or neither.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    pub client_cert_auth: bool,
    /// Self-signed certificate under `<data-dir>/fixtures/<port>` (only when no files are given).
    pub auto_tls: bool,
    /// Some listener of this port is `https`.
    pub serve_https: bool,
    /// Hosts for an auto-tls certificate (of the port's URLs).
    pub hosts: Vec<String>,
}

impl PortSettings {
    /// Whether a certificate (given or generated) is needed.
    fn has_cert(&self) -> bool {
        self.cert_file.is_some() || self.auto_tls
    }
}

/// The TLS settings of a member, from [`TlsFlags::into_settings`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub client: PortSettings,
    pub peer: PortSettings,
    /// Some peer URL this member may dial is `https`.
    pub dial_https_peers: bool,
}

/// The parts of a URL the checks need.
fn scheme_and_host(url: &str) -> (&str, &str) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let rest = rest.trim_end_matches('/');
    let host = match rest.rsplit_once(':') {
        Some((h, _)) => h.trim_matches(|c| c == '[' || c == ']'),
        None => rest,
    };
    (scheme, host)
}

/// The URLs of a member that the TLS checks look at.
#[derive(Debug, Clone, Copy, Default)]
pub struct Urls<'a> {
    pub listen_client: &'a [String],
    pub advertise_client: &'a [String],
    pub listen_peer: &'a [String],
    pub advertise_peer: &'a [String],
    /// Every peer URL of `--initial-cluster`.
    pub cluster_peers: &'a [String],
}

fn is_https(u: &str) -> bool {
    scheme_and_host(u).0 == "https"
}

/// The sorted, distinct hosts of some URLs.
fn hosts_of<'a>(urls: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut h: Vec<String> = urls
        .into_iter()
        .map(|u| scheme_and_host(u).1.to_string())
        .collect();
    h.sort();
    h.dedup();
    h
}

impl TlsFlags {
    /// Checks the flags against the member's URLs, with etcd's messages
    /// where etcd has them: an `https` listen URL needs a certificate (or
    /// auto-tls); client cert auth needs its CA.
    pub fn into_settings(self, urls: Urls<'_>) -> Result<Settings> {
        let bad = |m: String| Error::Config(m);
        let pair = |cert: &Option<PathBuf>, key: &Option<PathBuf>, c: &str, k: &str| {
            if cert.is_some() != key.is_some() {
                return Err(bad(format!("--{c} and --{k} must be given together")));
            }
            Ok(())
        };
        pair(&self.cert_file, &self.key_file, "cert-file", "key-file")?;
        pair(
            &self.peer_cert_file,
            &self.peer_key_file,
            "peer-cert-file",
            "peer-key-file",
        )?;
        let client = PortSettings {
            auto_tls: self.auto_tls && self.cert_file.is_none(),
            cert_file: self.cert_file,
            key_file: self.key_file,
            trusted_ca_file: self.trusted_ca_file,
            client_cert_auth: self.client_cert_auth,
            serve_https: urls.listen_client.iter().any(|u| is_https(u)),
            hosts: hosts_of(urls.listen_client.iter().chain(urls.advertise_client)),
        };
        let peer = PortSettings {
            auto_tls: self.peer_auto_tls && self.peer_cert_file.is_none(),
            cert_file: self.peer_cert_file,
            key_file: self.peer_key_file,
            trusted_ca_file: self.peer_trusted_ca_file,
            client_cert_auth: self.peer_client_cert_auth,
            serve_https: urls.listen_peer.iter().any(|u| is_https(u)),
            hosts: hosts_of(urls.listen_peer.iter().chain(urls.advertise_peer)),
        };
        if self.auto_tls && !client.auto_tls {
            tracing::warn!("ignoring client auto TLS since certs given");
        }
        if self.peer_auto_tls && !peer.auto_tls {
            tracing::warn!("ignoring peer auto TLS since certs given");
        }
        if let Some(u) = urls.listen_client.iter().find(|u| is_https(u)) {
            if !client.has_cert() {
                return Err(bad(format!(
                    "TLS key/cert (--cert-file, --key-file) must be provided for client url {u} with HTTPS scheme"
                )));
            }
        }
        if let Some(u) = urls.listen_peer.iter().find(|u| is_https(u)) {
            if !peer.has_cert() {
                let addr = u.split_once("://").map_or(u.as_str(), |(_, a)| a);
                return Err(bad(format!(
                    "cannot listen on TLS for {}: KeyFile and CertFile are not presented",
                    addr.trim_end_matches('/')
                )));
            }
        }
        if client.client_cert_auth && client.trusted_ca_file.is_none() {
            return Err(bad(
                "--client-cert-auth needs --trusted-ca-file (the CA that signs client certificates)"
                    .into(),
            ));
        }
        if peer.client_cert_auth && peer.trusted_ca_file.is_none() {
            return Err(bad(
                "--peer-client-cert-auth needs --peer-trusted-ca-file (the CA that signs peer certificates)"
                    .into(),
            ));
        }
        let dial_https_peers = urls
            .cluster_peers
            .iter()
            .chain(urls.advertise_peer)
            .chain(urls.listen_peer)
            .any(|u| is_https(u));
        if dial_https_peers && peer.trusted_ca_file.is_none() && !peer.auto_tls {
            tracing::warn!(
                "https peer URLs without --peer-trusted-ca-file: the peers' certificates are checked against the system's roots"
            );
        }
        if client.has_cert() && !client.serve_https {
            tracing::warn!(
                "the client URLs are http while key/cert files are given; ignoring them"
            );
        }
        if peer.has_cert() && !peer.serve_https && !dial_https_peers {
            tracing::warn!("the peer URLs are http while key/cert files are given; ignoring them");
        }
        Ok(Settings {
            client,
            peer,
            dial_https_peers,
        })
    }
}

/// Certificates loaded at start-up: the server configs of both ports and
/// the peer dialer.
#[derive(Clone, Default)]
pub struct Security {
    /// For `https` client listeners.
    pub client: Option<Arc<ServerConfig>>,
    /// For `https` peer listeners.
    pub peer: Option<Arc<ServerConfig>>,
    /// Dials other members' peer URLs.
    pub dialer: Dialer,
}

impl Security {
    /// Reads (or, with auto-tls, generates under `<data_dir>/fixtures`) the
    /// certificates the settings name.
    pub fn load(settings: &Settings, data_dir: &Path) -> Result<Security> {
        let client_files = port_files(&settings.client, &data_dir.join("fixtures/client"))?;
        let peer_files = port_files(&settings.peer, &data_dir.join("fixtures/peer"))?;
        let client = match (&client_files, settings.client.serve_https) {
            (Some(f), true) => Some(server_config(f, &settings.client)?),
            _ => None,
        };
        let peer = match (&peer_files, settings.peer.serve_https) {
            (Some(f), true) => Some(server_config(f, &settings.peer)?),
            _ => None,
        };
        let dialer = if settings.dial_https_peers {
            let ca = settings
                .peer
                .trusted_ca_file
                .as_deref()
                .map(read)
                .transpose()?;
            let (cert, key) = match &peer_files {
                Some(f) => (Some(f.cert.clone()), Some(f.key.clone())),
                None => (None, None),
            };
            Dialer(Some(Arc::new(TlsOptions {
                ca_pem: ca,
                cert_pem: cert,
                key_pem: key,
                insecure_skip_verify: settings.peer.auto_tls
                    && settings.peer.trusted_ca_file.is_none(),
            })))
        } else {
            Dialer(None)
        };
        if let Some(f) = &client_files {
            tracing::info!(cert = %f.cert_path.display(), client_cert_auth = settings.client.client_cert_auth, "client TLS");
        }
        if let Some(f) = &peer_files {
            tracing::info!(cert = %f.cert_path.display(), client_cert_auth = settings.peer.client_cert_auth, "peer TLS");
        }
        Ok(Security {
            client,
            peer,
            dialer,
        })
    }
}

/// Dials other members: the one place peer endpoints are built.
#[derive(Clone, Default, Debug)]
pub struct Dialer(Option<Arc<TlsOptions>>);

impl Dialer {
    /// An endpoint for a peer URL, with the peer TLS settings when it is
    /// `https`. The caller adds its timeouts.
    pub fn endpoint(&self, url: &str) -> Result<tonic::transport::Endpoint> {
        keel_client::tls::endpoint(url, self.0.as_deref())
            .map_err(|e| Error::Transport(format!("peer {url}: {e}")))
    }
}

/// The Common Name of the client certificate a request came with, if it came
/// over TLS with one (`--client-cert-auth`). etcd uses it as the user name
/// when auth is enabled.
pub fn common_name<T>(request: &tonic::Request<T>) -> Option<String> {
    let certs = request.peer_certs()?;
    common_name_of(certs.first()?)
}

/// The first Common Name in a DER certificate's subject.
pub fn common_name_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// A port's certificate and key, in PEM.
struct Files {
    cert_path: PathBuf,
    cert: Vec<u8>,
    key: Vec<u8>,
}

fn port_files(port: &PortSettings, auto_dir: &Path) -> Result<Option<Files>> {
    let (cert_path, key_path) = match (&port.cert_file, &port.key_file) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ if port.auto_tls => auto::self_cert(auto_dir, &port.hosts)?,
        _ => return Ok(None),
    };
    let cert = read(&cert_path)?;
    let key = read(&key_path)?;
    Ok(Some(Files {
        cert_path,
        cert,
        key,
    }))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Config(format!("open {}: {e}", path.display())))
}

fn certs_of(pem: &[u8], what: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("{}: {e}", what.display())))?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "{}: no certificate found",
            what.display()
        )));
    }
    Ok(certs)
}

/// A rustls server config for one port: its certificate, and with
/// client-cert-auth a verifier of client certificates against the CA.
fn server_config(files: &Files, port: &PortSettings) -> Result<Arc<ServerConfig>> {
    let bad = |m: String| Error::Config(m);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("TLS: {e}")))?;
    // As etcd 3.4 (its TLSInfo.ServerConfig): a trusted CA alone also makes
    // a client certificate required.
    let builder = match &port.trusted_ca_file {
        Some(ca_path) => {
            let mut roots = RootCertStore::empty();
            for c in certs_of(&read(ca_path)?, ca_path)? {
                roots
                    .add(c)
                    .map_err(|e| bad(format!("{}: {e}", ca_path.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .map_err(|e| bad(format!("{}: {e}", ca_path.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let certs = certs_of(&files.cert, &files.cert_path)?;
    let key = PrivateKeyDer::from_pem_slice(&files.key)
        .map_err(|e| bad(format!("the key of {}: {e}", files.cert_path.display())))?;
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| bad(format!("{} and its key: {e}", files.cert_path.display())))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests;
