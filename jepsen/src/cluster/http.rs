//! A minimal blocking HTTP/1.1 client for the members' plain endpoints
//! (`/health`, `/metrics`, `/debug/fault/...`): one request per connection,
//! short timeouts so that a paused (SIGSTOPped) member cannot hang the caller.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Sends `method path` to `addr`; returns (status, body), or None when the
/// member did not answer within `timeout`.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    timeout: Duration,
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code: u16 = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

/// `GET /health` says `"health":"true"`.
pub fn healthy(addr: SocketAddr, timeout: Duration) -> bool {
    matches!(request(addr, "GET", "/health", timeout), Some((200, b)) if b.contains("\"true\""))
}

/// `/metrics` has `etcd_server_is_leader 1` (keel and etcd both export it).
pub fn is_leader(addr: SocketAddr, timeout: Duration) -> bool {
    request(addr, "GET", "/metrics", timeout)
        .map(|(_, b)| b.lines().any(|l| l.trim() == "etcd_server_is_leader 1"))
        .unwrap_or(false)
}
