//! Connections of a run: one tonic `Channel` per `--conns` (TCP_NODELAY,
//! writes gathered as grpc-go gathers them), the
//! endpoints dealt to them round-robin, and `--target-leader`'s search for the
//! leader: Maintenance.Status first, then `etcd_server_is_leader 1` in the
//! endpoint's `/metrics` (plain HTTP on the client URL) for servers without it.
//! TLS (`--cacert`, `--cert`, `--key`) is keel-client's ([`keel_client::tls`]).
//!
//! With `--user`, the run authenticates once and every channel adds the
//! token to each request ([`Token`]).
//!
//! A connection ([`Conn`]) of a unary workload (`put`, `range`, `txn-put`,
//! `watch`'s puts) on a plain-HTTP endpoint also has a [`Lean`] client,
//! which carries its KV calls; its tonic channel then connects only if
//! something else (`put --compact-interval`'s compactor) uses it.
//! `--tonic-client` keeps every call on tonic.

use std::time::Duration;

use anyhow::{bail, Context};
use keel_client::tls::TlsOptions;
use keel_proto::etcdserverpb::auth_client::AuthClient;
use keel_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_proto::etcdserverpb::AuthenticateRequest;
use keel_proto::etcdserverpb::StatusRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;

use super::lean::Lean;

/// A channel of the run: adds the token, if any, to every request.
pub type BenchChannel = InterceptedService<Channel, Token>;

/// One connection of the run: a tonic channel and, on a plain-HTTP endpoint
/// unless `--tonic-client`, the lean client that carries the unary KV calls.
#[derive(Clone)]
pub struct Conn {
    pub channel: BenchChannel,
    pub lean: Option<Lean>,
}

/// The run's auth token (none without `--user`).
#[derive(Clone, Default)]
pub struct Token(Option<MetadataValue<Ascii>>);

impl Interceptor for Token {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.0 {
            req.metadata_mut().insert("token", t.clone());
        }
        Ok(req)
    }
}

impl Token {
    /// Authenticates `user` (`name:password`, or `name` and a password on
    /// stdin) at `url`; no user, no token.
    pub async fn for_user(user: Option<&str>, url: &str, how: &Dial) -> anyhow::Result<Token> {
        let Some(user) = user else {
            return Ok(Token::default());
        };
        let (name, password) = match user.split_once(':') {
            Some((n, p)) => (n.to_string(), p.to_string()),
            None => {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .context("reading the password from stdin")?;
                (
                    user.to_string(),
                    line.trim_end_matches(['\r', '\n']).to_string(),
                )
            }
        };
        let resp = AuthClient::new(dial(url, how).await?)
            .authenticate(AuthenticateRequest {
                name: name.clone(),
                password,
            })
            .await
            .map_err(|s| anyhow::anyhow!("authenticating as {name}: {}", s.message()))?;
        let token = MetadataValue::try_from(resp.into_inner().token)
            .context("the server's token is not ASCII")?;
        Ok(Token(Some(token)))
    }
}

/// How to dial: the connect timeout and TLS.
#[derive(Debug, Clone)]
pub struct Dial {
    pub timeout: Duration,
    pub tls: Option<TlsOptions>,
}

/// `127.0.0.1:2379`, `http://127.0.0.1:2379` or `https://127.0.0.1:2379` as a
/// URL tonic dials (a bare address is https when TLS options are given).
pub fn endpoint_url(e: &str, tls: Option<&TlsOptions>) -> anyhow::Result<String> {
    let url = keel_client::tls::endpoint_url(e, tls);
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("invalid endpoint {e:?}: the scheme must be http or https");
    }
    url.parse::<tonic::codegen::http::Uri>()
        .with_context(|| format!("invalid endpoint {e:?}"))?;
    Ok(url)
}

/// Opens one channel to `url`. Its requests leave as grpc-go's (under etcd's
/// benchmark tool) do: those ready together share a write
/// ([`crate::coalesce`]).
pub async fn dial(url: &str, how: &Dial) -> anyhow::Result<Channel> {
    endpoint(url, how)?
        .connect_with_connector(tower::service_fn(crate::coalesce::connect))
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// `url` as tonic dials it, with `how`'s TLS and connect timeout.
fn endpoint(url: &str, how: &Dial) -> anyhow::Result<tonic::transport::Endpoint> {
    Ok(keel_client::tls::endpoint(url, how.tls.as_ref())
        .with_context(|| format!("invalid endpoint {url}"))?
        .connect_timeout(how.timeout))
}

/// Opens a channel to `url` that connects when first used.
fn dial_lazy(url: &str, how: &Dial) -> anyhow::Result<Channel> {
    Ok(
        endpoint(url, how)?
            .connect_with_connector_lazy(tower::service_fn(crate::coalesce::connect)),
    )
}

/// Opens `conns` connections, connection `i` to endpoint `i mod len`; with
/// `lean`, each on a plain-HTTP endpoint is a [`Lean`] client (and a tonic
/// channel that connects when first used).
pub async fn connect(
    urls: &[String],
    conns: usize,
    how: &Dial,
    token: &Token,
    lean: bool,
) -> anyhow::Result<Vec<Conn>> {
    anyhow::ensure!(!urls.is_empty(), "no endpoints");
    let mut out = Vec::with_capacity(conns.max(1));
    for i in 0..conns.max(1) {
        let url = &urls[i % urls.len()];
        let conn = if lean && url.starts_with("http://") {
            let text = token
                .0
                .as_ref()
                .map(|t| t.to_str())
                .transpose()
                .context("the auth token is not printable ASCII")?;
            Conn {
                lean: Some(Lean::connect(url, how.timeout, text).await?),
                channel: InterceptedService::new(dial_lazy(url, how)?, token.clone()),
            }
        } else {
            Conn {
                channel: InterceptedService::new(dial(url, how).await?, token.clone()),
                lean: None,
            }
        };
        out.push(conn);
    }
    Ok(out)
}

/// The leader among `urls`, or `None` when no endpoint says which it is.
pub async fn find_leader(urls: &[String], how: &Dial) -> Option<String> {
    for url in urls {
        match is_leader(url, how).await {
            Ok(true) => return Some(url.clone()),
            Ok(false) => {}
            Err(e) => tracing::warn!("--target-leader: asking {url}: {e:#}"),
        }
    }
    None
}

/// Whether the member at `url` is the leader.
async fn is_leader(url: &str, how: &Dial) -> anyhow::Result<bool> {
    let channel = dial(url, how).await?;
    match MaintenanceClient::new(channel)
        .status(StatusRequest {})
        .await
    {
        Ok(resp) => {
            let s = resp.into_inner();
            let member = s.header.map(|h| h.member_id).unwrap_or(0);
            Ok(member != 0 && member == s.leader)
        }
        Err(status) => {
            tracing::debug!("{url}: Maintenance.Status: {status}; trying /metrics");
            if url.starts_with("https://") {
                bail!("{url}: Maintenance.Status: {status}");
            }
            let metrics = http_get(url, "/metrics", how.timeout).await?;
            Ok(metrics_say_leader(&metrics))
        }
    }
}

/// Whether a Prometheus text exposition has `etcd_server_is_leader 1`.
pub fn metrics_say_leader(text: &str) -> bool {
    text.lines().any(|l| {
        let mut it = l.split_whitespace();
        it.next() == Some("etcd_server_is_leader")
            && it.next().and_then(|v| v.parse::<f64>().ok()) == Some(1.0)
    })
}

/// A minimal HTTP/1.1 GET; returns the body (or the whole answer if unsplittable).
async fn http_get(url: &str, path: &str, timeout: Duration) -> anyhow::Result<String> {
    let authority = url.trim_start_matches("http://");
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(authority).await?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        anyhow::Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    let text = tokio::time::timeout(timeout, fetch)
        .await
        .with_context(|| format!("GET {url}{path}: timed out"))??;
    Ok(text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_become_urls() {
        assert_eq!(
            endpoint_url("127.0.0.1:2379", None).unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            endpoint_url("http://localhost:2379/", None).unwrap(),
            "http://localhost:2379"
        );
        let tls = TlsOptions::default();
        assert_eq!(
            endpoint_url("127.0.0.1:2379", Some(&tls)).unwrap(),
            "https://127.0.0.1:2379"
        );
        assert_eq!(endpoint_url("https://x:1", None).unwrap(), "https://x:1");
        assert!(endpoint_url("ftp://x:1", None).is_err());
    }

    #[test]
    fn leader_line_in_metrics() {
        let t = "# HELP etcd_server_is_leader ...\n# TYPE etcd_server_is_leader gauge\netcd_server_is_leader 1\n";
        assert!(metrics_say_leader(t));
        assert!(!metrics_say_leader("etcd_server_is_leader 0\n"));
        assert!(!metrics_say_leader("etcd_server_is_leader_x 1\n"));
    }
}
