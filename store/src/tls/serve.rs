//! Serving a tonic router on a listener, in plain text or behind TLS.
//!
//! With TLS, an accept task takes TCP connections (TCP_NODELAY set) and runs
//! each handshake on a task of its own, with a timeout, so that a slow or
//! silent client holds up nobody; completed streams go to tonic through a
//! bounded channel. They are `tokio_rustls` server streams, for which tonic
//! records the client's certificates in each request's extensions
//! (`Request::peer_certs`, see [`super::common_name`]). A failed handshake is
//! logged as a warning ("rejected connection", the remote address and the
//! reason), as etcd logs it. The accept task ends when tonic stops (drops
//! the stream), which closes the listening socket.
//!
//! Plain-text client connections get [`crate::authority::FixAuthority`]
//! (etcdctl's scheme-bearing `:authority`); over TLS etcdctl sends the host
//! alone, and peers are keel members: neither needs it. Every connection,
//! under TLS if any, gathers its writes ([`Coalesce`]).
//!
//! A plain-text peer port also carries the Raft lane ([`crate::lane`]): its
//! accept task peeks at each connection's first bytes on a task of its own
//! (with the same timeout), and hands one that opens with the lane's magic
//! to the lane's handler instead of tonic.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Router, TcpIncoming};

use crate::coalesce::Coalesce;

/// How long a client may take to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which port a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Client,
    Peer,
}

impl Port {
    fn name(self) -> &'static str {
        match self {
            Port::Client => "client",
            Port::Peer => "peer",
        }
    }
}

/// Takes the plain-text peer connections that open with the Raft lane's
/// magic ([`crate::lane`]), as std sockets (still non-blocking: the handler
/// sets the mode it wants).
pub type LaneHandler = Arc<dyn Fn(std::net::TcpStream) + Send + Sync>;

/// Serves `router` on `listener` until `shutdown` resolves: behind TLS with
/// `tls`, in plain text without; on a plain-text peer port, connections
/// that open with [`crate::lane::MAGIC`] go to `lane` instead.
pub async fn serve(
    router: Router,
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    port: Port,
    lane: Option<LaneHandler>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    // tonic's own tcp_nodelay does not apply to a given listener: set it on
    // every accepted socket (else Nagle delays replies).
    let plain = |l: TcpListener| TcpIncoming::from(l).with_nodelay(Some(true));
    match (tls, port) {
        (Some(cfg), port) => {
            router
                .serve_with_incoming_shutdown(incoming(listener, cfg, port.name()), shutdown)
                .await
        }
        (None, Port::Client) => {
            router
                .serve_with_incoming_shutdown(
                    plain(listener)
                        .map_ok(|s| Coalesce::new(crate::authority::FixAuthority::new(s))),
                    shutdown,
                )
                .await
        }
        (None, Port::Peer) => match lane {
            Some(lane) => {
                router
                    .serve_with_incoming_shutdown(sorted(listener, lane), shutdown)
                    .await
            }
            None => {
                router
                    .serve_with_incoming_shutdown(plain(listener).map_ok(Coalesce::new), shutdown)
                    .await
            }
        },
    }
}

/// The plain-text connections `listener` accepts, but for those that open
/// with the Raft lane's magic: each connection's first bytes are peeked on
/// a task of its own (with the handshake timeout), and a lane connection
/// goes to `lane`.
fn sorted(
    listener: TcpListener,
    lane: LaneHandler,
) -> ReceiverStream<std::io::Result<Coalesce<TcpStream>>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = tx.closed() => return,
            };
            let tcp = match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!(port = "peer", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (lane, tx) = (lane.clone(), tx.clone());
            tokio::spawn(async move {
                let magic = crate::lane::MAGIC;
                let mut head = [0u8; 8];
                let is_lane = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
                    loop {
                        let n = tcp.peek(&mut head).await?;
                        if n == 0 || head[..n] != magic[..n] {
                            return Ok::<bool, std::io::Error>(false);
                        }
                        if n == magic.len() {
                            return Ok(true);
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                })
                .await;
                match is_lane {
                    Ok(Ok(true)) => match tcp.into_std() {
                        Ok(std) => lane(std),
                        Err(e) => tracing::warn!(error = %e, "raft lane: cannot take the socket"),
                    },
                    Ok(Ok(false)) => {
                        let _ = tx.send(Ok(Coalesce::new(tcp))).await;
                    }
                    Ok(Err(_)) | Err(_) => {}
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// The TLS streams of the connections `listener` accepts.
fn incoming(
    listener: TcpListener,
    cfg: Arc<ServerConfig>,
    port: &'static str,
) -> ReceiverStream<std::io::Result<TlsStream<Coalesce<TcpStream>>>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(cfg);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = tx.closed() => return,
            };
            let (tcp, remote) = match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off a little.
                    tracing::warn!(port, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(Coalesce::new(tcp)))
                    .await
                {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(port, %remote, error = %e, "rejected connection: TLS handshake failed")
                    }
                    Err(_) => {
                        tracing::warn!(port, %remote, "rejected connection: TLS handshake timed out")
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
