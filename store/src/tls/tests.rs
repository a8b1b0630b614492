//! The flag rules, auto-tls files, and a real TLS server: client certificate
//! required and its Common Name seen by a service.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

use super::*;

fn urls(s: &[&str]) -> Vec<String> {
    s.iter().map(|u| u.to_string()).collect()
}

fn settings(flags: TlsFlags, client: &[&str], peer: &[&str]) -> Result<Settings> {
    let (client, peer) = (urls(client), urls(peer));
    flags.into_settings(Urls {
        listen_client: &client,
        advertise_client: &client,
        listen_peer: &peer,
        advertise_peer: &peer,
        cluster_peers: &peer,
    })
}

#[test]
fn https_without_a_certificate_is_refused_with_etcds_message() {
    let e = settings(
        TlsFlags::default(),
        &["https://127.0.0.1:2379"],
        &["http://127.0.0.1:2380"],
    )
    .unwrap_err()
    .to_string();
    assert_eq!(e, "configuration: TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:2379 with HTTPS scheme");
    let e = settings(
        TlsFlags {
            peer_trusted_ca_file: Some("ca.pem".into()),
            ..Default::default()
        },
        &["http://127.0.0.1:2379"],
        &["https://127.0.0.1:2380"],
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "configuration: cannot listen on TLS for 127.0.0.1:2380: KeyFile and CertFile are not presented"
    );
}

#[test]
fn other_bad_combinations_are_refused() {
    let e = settings(
        TlsFlags {
            cert_file: Some("c.pem".into()),
            ..Default::default()
        },
        &["https://127.0.0.1:2379"],
        &["http://127.0.0.1:2380"],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("--cert-file and --key-file must be given together"),
        "{e}"
    );
    let e = settings(
        TlsFlags {
            auto_tls: true,
            client_cert_auth: true,
            ..Default::default()
        },
        &["https://127.0.0.1:2379"],
        &["http://127.0.0.1:2380"],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("--client-cert-auth needs --trusted-ca-file"),
        "{e}"
    );
}

#[test]
fn only_listen_urls_need_a_certificate() {
    // `keel snapshot restore` with https cluster URLs listens nowhere: it
    // needs no certificate, and would dial with the system's roots.
    let (listen_client, listen_peer) = (
        urls(&["http://127.0.0.1:2379"]),
        urls(&["http://127.0.0.1:2380"]),
    );
    let advertise_peer = urls(&["https://127.0.0.1:2380"]);
    let cluster_peers = urls(&["https://127.0.0.1:2380", "https://127.0.0.1:3380"]);
    let s = TlsFlags::default()
        .into_settings(Urls {
            listen_client: &listen_client,
            advertise_client: &listen_client,
            listen_peer: &listen_peer,
            advertise_peer: &advertise_peer,
            cluster_peers: &cluster_peers,
        })
        .unwrap();
    assert!(s.dial_https_peers && !s.peer.serve_https && !s.client.serve_https);
}

#[test]
fn good_flags_give_settings() {
    let s = settings(
        TlsFlags {
            auto_tls: true,
            peer_auto_tls: true,
            ..Default::default()
        },
        &["https://127.0.0.1:2379", "http://127.0.0.1:4379"],
        &["https://localhost:2380"],
    )
    .unwrap();
    assert!(s.client.auto_tls && s.client.serve_https);
    assert!(s.peer.auto_tls && s.dial_https_peers);
    assert_eq!(s.peer.hosts, vec!["localhost".to_string()]);
    // Plain URLs: nothing to do.
    let s = settings(
        TlsFlags::default(),
        &["http://127.0.0.1:2379"],
        &["http://127.0.0.1:2380"],
    )
    .unwrap();
    assert!(!s.client.serve_https && !s.peer.serve_https && !s.dial_https_peers);
}

#[test]
fn auto_tls_makes_a_certificate_once_and_reuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("fixtures/client");
    let (cert, key) = auto::self_cert(&sub, &["127.0.0.1".into()]).unwrap();
    let first = std::fs::read(&cert).unwrap();
    assert!(String::from_utf8_lossy(&first).contains("BEGIN CERTIFICATE"));
    let der = CertificateDer::from_pem_slice(&first).unwrap();
    let (_, x509) = x509_parser::parse_x509_certificate(&der).unwrap();
    let san = x509.subject_alternative_name().unwrap().unwrap();
    assert!(
        format!("{:?}", san.value.general_names).contains("IPAddress([127, 0, 0, 1])"),
        "{:?}",
        san.value.general_names
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "key.pem must be private: {mode:o}");
    }
    let (cert2, _) = auto::self_cert(&sub, &["127.0.0.1".into()]).unwrap();
    assert_eq!(std::fs::read(cert2).unwrap(), first);
}

/// A CA and certificates signed by it, written as PEM files into `dir`.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    fn new(dir: &Path, name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        TestCa {
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes `<file>.pem` and `<file>-key.pem` for CN `cn`.
    fn issue(&self, dir: &Path, file: &str, cn: &str) {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        std::fs::write(dir.join(format!("{file}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{file}-key.pem")), key.serialize_pem()).unwrap();
    }
}

/// A health service on a TLS port with client-cert-auth, behind an
/// interceptor that records the caller's Common Name; routed through axum as
/// the client port's services are.
async fn serve_health(
    dir: &Path,
    seen: Arc<Mutex<Vec<Option<String>>>>,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let settings = TlsFlags {
        cert_file: Some(dir.join("server.pem")),
        key_file: Some(dir.join("server-key.pem")),
        trusted_ca_file: Some(dir.join("ca.pem")),
        client_cert_auth: true,
        ..Default::default()
    }
    .into_settings(Urls {
        listen_client: &urls(&["https://127.0.0.1:1"]),
        listen_peer: &urls(&["http://127.0.0.1:2"]),
        ..Default::default()
    })
    .unwrap();
    let security = Security::load(&settings, dir).unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let svc = tonic::service::interceptor::InterceptedService::new(
        health,
        move |req: tonic::Request<()>| {
            seen.lock().unwrap().push(common_name(&req));
            Ok(req)
        },
    );
    let mut routes = tonic::service::Routes::builder();
    routes.add_service(svc);
    let axum_router = routes.routes().into_axum_router();
    let router = tonic::transport::Server::builder()
        .accept_http1(true)
        .add_routes(tonic::service::Routes::from(axum_router));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(
        router,
        listener,
        security.client,
        Port::Client,
        None,
        async move {
            let _ = stop_rx.await;
        },
    ));
    (addr, stop_tx)
}

async fn check(addr: std::net::SocketAddr, tls: &TlsOptions) -> std::result::Result<(), String> {
    let channel = keel_client::tls::endpoint(&format!("https://{addr}"), Some(tls))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn client_certificates_are_required_and_their_common_name_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = TestCa::new(d, "ca");
    ca.issue(d, "server", "server");
    ca.issue(d, "alice", "alice");
    let other = TestCa::new(d, "other-ca");
    other.issue(d, "mallory", "mallory");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (addr, _stop) = serve_health(d, seen.clone()).await;
    let files = |c: &str| {
        TlsOptions::from_files(
            Some(&d.join("ca.pem")),
            Some(&d.join(format!("{c}.pem"))),
            Some(&d.join(format!("{c}-key.pem"))),
        )
        .unwrap()
    };
    check(addr, &files("alice")).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![Some("alice".to_string())]);
    // No client certificate, or one from another CA: the handshake fails
    // and no request reaches the service.
    let no_cert = TlsOptions::from_files(Some(&d.join("ca.pem")), None, None).unwrap();
    assert!(check(addr, &no_cert).await.is_err());
    assert!(check(addr, &files("mallory")).await.is_err());
    assert_eq!(seen.lock().unwrap().len(), 1);
    // A client that does not trust the server's CA refuses it.
    let wrong_root = TlsOptions::from_files(
        Some(&d.join("other-ca.pem")),
        Some(&d.join("alice.pem")),
        Some(&d.join("alice-key.pem")),
    )
    .unwrap();
    assert!(check(addr, &wrong_root).await.is_err());
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[test]
fn common_name_of_a_plain_request_is_none() {
    assert_eq!(common_name(&tonic::Request::new(())), None);
    assert_eq!(common_name_of(b"not a certificate"), None);
}

#[tokio::test]
async fn keel_cert_makes_a_ca_and_certificates_that_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |cmd: certs::CertCmd| cmd.run().unwrap();
    run(certs::CertCmd::Ca {
        dir: d.to_path_buf(),
        cn: "test-ca".into(),
        days: 2,
    });
    let again = certs::CertCmd::Ca {
        dir: d.to_path_buf(),
        cn: "test-ca".into(),
        days: 2,
    }
    .run()
    .unwrap_err()
    .to_string();
    assert!(again.contains("not overwriting"), "{again}");
    for (name, cn) in [("server", None), ("alice", None), ("bob", Some("robert"))] {
        run(certs::CertCmd::Issue {
            name: name.into(),
            dir: d.to_path_buf(),
            cn: cn.map(str::to_string),
            hosts: vec!["127.0.0.1".into(), "localhost".into()],
            days: 2,
        });
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (addr, _stop) = serve_health(d, seen.clone()).await;
    for who in ["alice", "bob"] {
        let tls = TlsOptions::from_files(
            Some(&d.join("ca.pem")),
            Some(&d.join(format!("{who}.pem"))),
            Some(&d.join(format!("{who}-key.pem"))),
        )
        .unwrap();
        check(addr, &tls).await.unwrap();
    }
    assert_eq!(
        *seen.lock().unwrap(),
        vec![Some("alice".to_string()), Some("robert".to_string())]
    );
}
