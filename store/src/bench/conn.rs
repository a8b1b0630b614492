//! Connections of a run: one tonic `Channel` per `--conns` (TCP_NODELAY), the
//! endpoints dealt to them round-robin, and `--target-leader`'s search for the
//! leader: Maintenance.Status first, then `etcd_server_is_leader 1` in the
//! endpoint's `/metrics` (plain HTTP on the client URL) for servers without it.

use std::time::Duration;

use anyhow::{bail, Context};
use keel_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_proto::etcdserverpb::StatusRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Channel, Endpoint};

/// `127.0.0.1:2379` or `http://127.0.0.1:2379` as a URL tonic dials.
pub fn endpoint_url(e: &str) -> anyhow::Result<String> {
    let e = e.trim().trim_end_matches('/');
    if e.starts_with("https://") {
        bail!("{e}: TLS endpoints are not supported by keel bench yet");
    }
    let url = if e.starts_with("http://") {
        e.to_string()
    } else {
        format!("http://{e}")
    };
    url.parse::<tonic::codegen::http::Uri>()
        .with_context(|| format!("invalid endpoint {e:?}"))?;
    Ok(url)
}

/// Opens one channel to `url`.
pub async fn dial(url: &str, timeout: Duration) -> anyhow::Result<Channel> {
    Endpoint::from_shared(url.to_string())
        .with_context(|| format!("invalid endpoint {url}"))?
        .tcp_nodelay(true)
        .connect_timeout(timeout)
        .connect()
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// Opens `conns` channels, channel `i` to endpoint `i mod len`.
pub async fn connect(
    urls: &[String],
    conns: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<Channel>> {
    anyhow::ensure!(!urls.is_empty(), "no endpoints");
    let mut channels = Vec::with_capacity(conns.max(1));
    for i in 0..conns.max(1) {
        channels.push(dial(&urls[i % urls.len()], timeout).await?);
    }
    Ok(channels)
}

/// The leader among `urls`, or `None` when no endpoint says which it is.
pub async fn find_leader(urls: &[String], timeout: Duration) -> Option<String> {
    for url in urls {
        match is_leader(url, timeout).await {
            Ok(true) => return Some(url.clone()),
            Ok(false) => {}
            Err(e) => tracing::warn!("--target-leader: asking {url}: {e:#}"),
        }
    }
    None
}

/// Whether the member at `url` is the leader.
async fn is_leader(url: &str, timeout: Duration) -> anyhow::Result<bool> {
    let channel = dial(url, timeout).await?;
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
            let metrics = http_get(url, "/metrics", timeout).await?;
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
            endpoint_url("127.0.0.1:2379").unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            endpoint_url("http://localhost:2379/").unwrap(),
            "http://localhost:2379"
        );
        assert!(endpoint_url("https://x:1").is_err());
    }

    #[test]
    fn leader_line_in_metrics() {
        let t = "# HELP etcd_server_is_leader ...\n# TYPE etcd_server_is_leader gauge\netcd_server_is_leader 1\n";
        assert!(metrics_say_leader(t));
        assert!(!metrics_say_leader("etcd_server_is_leader 0\n"));
        assert!(!metrics_say_leader("etcd_server_is_leader_x 1\n"));
    }
}
