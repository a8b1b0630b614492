//! `keel cert`: a small certificate authority for trying TLS out without
//! openssl or cfssl. `ca` makes a self-signed CA; `issue` makes a certificate
//! signed by it for a Common Name and hosts (IP addresses become IP SANs,
//! names DNS SANs), usable as a server and as a client certificate, so one
//! file can serve a member's client port, its peer port and its dialling.
//!
//! Keys are ECDSA P-256 (rcgen's default), written `0600`. For production,
//! use your organisation's PKI; this is etcd's "generate self-signed
//! certificates" guide in one binary.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::error::{Error, Result};

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

fn bad(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("{what}: {e}"))
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(i64::from(days));
}

/// A self-signed CA certificate named `cn`, valid for `days`.
pub fn make_ca(cn: &str, days: u32) -> Result<Pem> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| bad("CA", e))?;
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, days);
    let key = KeyPair::generate().map_err(|e| bad("CA key", e))?;
    let cert = params.self_signed(&key).map_err(|e| bad("CA", e))?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A certificate for `cn` and `hosts`, signed by the CA `ca`, valid for `days`.
pub fn issue(ca: &Pem, cn: &str, hosts: &[String], days: u32) -> Result<Pem> {
    let ca_key = KeyPair::from_pem(&ca.key).map_err(|e| bad("the CA key", e))?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca.cert, ca_key).map_err(|e| bad("the CA certificate", e))?;
    let mut params = CertificateParams::new(hosts.to_vec()).map_err(|e| bad("--hosts", e))?;
    params.distinguished_name.push(DnType::CommonName, cn);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    validity(&mut params, days);
    let key = KeyPair::generate().map_err(|e| bad("key", e))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| bad("signing", e))?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Writes `<dir>/<name>.pem` and `<dir>/<name>-key.pem` (the key `0600`);
/// returns the two paths.
pub fn write(pem: &Pem, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).map_err(|e| bad(&dir.display().to_string(), e))?;
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    std::fs::write(&cert, &pem.cert).map_err(|e| bad(&cert.display().to_string(), e))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(&key)
        .and_then(|mut f| std::io::Write::write_all(&mut f, pem.key.as_bytes()))
        .map_err(|e| bad(&key.display().to_string(), e))?;
    Ok((cert, key))
}

/// Reads `<dir>/<name>.pem` and `<dir>/<name>-key.pem`.
pub fn read(dir: &Path, name: &str) -> Result<Pem> {
    let r = |p: PathBuf| {
        std::fs::read_to_string(&p).map_err(|e| bad(&format!("open {}", p.display()), e))
    };
    Ok(Pem {
        cert: r(dir.join(format!("{name}.pem")))?,
        key: r(dir.join(format!("{name}-key.pem")))?,
    })
}

/// `keel cert ca|issue`.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum CertCmd {
    /// Make a CA: <dir>/ca.pem and <dir>/ca-key.pem.
    Ca {
        /// Where to write the files.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The CA's Common Name.
        #[arg(long, default_value = "keel-ca")]
        cn: String,
        /// Days of validity.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issue <dir>/NAME.pem and <dir>/NAME-key.pem, signed by <dir>/ca.pem,
    /// for servers (client and peer ports) and clients alike.
    Issue {
        /// File name, and the Common Name unless --cn is given (with
        /// --client-cert-auth, the CN is the user name).
        name: String,
        /// Where the CA is and the files go.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Common Name [default: NAME].
        #[arg(long)]
        cn: Option<String>,
        /// Hosts the certificate is for, comma separated (IPs or DNS names).
        #[arg(long, value_delimiter = ',', default_value = "127.0.0.1,localhost")]
        hosts: Vec<String>,
        /// Days of validity.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

impl CertCmd {
    /// Makes the files; returns what was written, for the user.
    pub fn run(self) -> Result<String> {
        match self {
            CertCmd::Ca { dir, cn, days } => {
                if dir.join("ca.pem").exists() {
                    return Err(Error::Config(format!(
                        "{} exists: not overwriting a CA",
                        dir.join("ca.pem").display()
                    )));
                }
                let (cert, key) = write(&make_ca(&cn, days)?, &dir, "ca")?;
                Ok(format!("wrote {} and {}", cert.display(), key.display()))
            }
            CertCmd::Issue {
                name,
                dir,
                cn,
                hosts,
                days,
            } => {
                let ca = read(&dir, "ca")?;
                let pem = issue(&ca, cn.as_deref().unwrap_or(&name), &hosts, days)?;
                let (cert, key) = write(&pem, &dir, &name)?;
                Ok(format!("wrote {} and {}", cert.display(), key.display()))
            }
        }
    }
}
