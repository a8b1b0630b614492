//! `--auto-tls` and `--peer-auto-tls`: a self-signed certificate for the
//! port, made once with rcgen and kept in the data dir
//! (`<data-dir>/fixtures/client` or `fixtures/peer`, `cert.pem` and
//! `key.pem`, as etcd's `transport.SelfCert` keeps them), reused on restart.
//!
//! The certificate is ECDSA P-256, valid for a year, for the hosts of the
//! port's URLs (IP addresses as IP SANs, names as DNS SANs), usable as a
//! server and as a client certificate (peers present it when they dial).
//! Clients of such a port cannot verify it: etcdctl needs
//! `--insecure-skip-tls-verify`, and peers with `--peer-auto-tls` accept each
//! other's certificates without verification, as etcd's do.

use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};

use crate::error::{Error, Result};

/// How long a generated certificate is valid (etcd 3.4's default).
const VALIDITY_DAYS: i64 = 365;

/// The certificate and key files under `dir`, made if either is missing.
pub fn self_cert(dir: &Path, hosts: &[String]) -> Result<(PathBuf, PathBuf)> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.is_file() && key_path.is_file() {
        return Ok((cert_path, key_path));
    }
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        Error::Config(format!("auto-tls: {what} in {}: {e}", dir.display()))
    };
    create_private_dir(dir).map_err(|e| bad("cannot create the directory", &e))?;
    let mut names: Vec<String> = hosts.iter().filter(|h| !h.is_empty()).cloned().collect();
    if names.is_empty() {
        names.push("localhost".into());
    }
    let mut params =
        CertificateParams::new(names).map_err(|e| bad("cannot use the URL hosts", &e))?;
    params
        .distinguished_name
        .push(DnType::OrganizationName, "keel");
    params
        .distinguished_name
        .push(DnType::CommonName, "keel auto-tls");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(VALIDITY_DAYS);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().map_err(|e| bad("cannot make a key", &e))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| bad("cannot sign the certificate", &e))?;
    write_private(&key_path, key.serialize_pem().as_bytes())
        .map_err(|e| bad("cannot write key.pem", &e))?;
    std::fs::write(&cert_path, cert.pem()).map_err(|e| bad("cannot write cert.pem", &e))?;
    tracing::info!(cert = %cert_path.display(), hosts = ?hosts, "generated a self-signed certificate (auto-tls)");
    Ok((cert_path, key_path))
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    std::io::Write::write_all(&mut opts.open(path)?, bytes)
}
