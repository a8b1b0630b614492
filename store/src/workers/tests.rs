use std::convert::Infallible;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

use super::*;

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

/// Waits up to 5 s for `cond`.
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// One request at a time, in a loop, until a worker is held.
fn lone_requests_until_held(w: &Arc<Workers>) {
    let until = Instant::now() + Duration::from_secs(5);
    while w.held() == 0 {
        assert!(Instant::now() < until, "no worker held under a lone client");
        drop(w.start());
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A timer and a loopback TCP round trip on the runtime, within 5 s.
fn runtime_still_serves(rt: &tokio::runtime::Runtime) {
    let done = rt.block_on(async {
        let served = tokio::spawn(async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let echo = tokio::spawn(async move {
                let (mut s, _) = l.accept().await.unwrap();
                let mut b = [0u8; 4];
                s.read_exact(&mut b).await.unwrap();
                s.write_all(&b).await.unwrap();
            });
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(b"ping").await.unwrap();
            let mut b = [0u8; 4];
            c.read_exact(&mut b).await.unwrap();
            echo.await.unwrap();
            b
        });
        tokio::time::timeout(Duration::from_secs(5), served).await
    });
    assert_eq!(&done.expect("runtime stalled").unwrap(), b"ping");
}

#[test]
fn a_lone_client_holds_the_spare_worker_and_a_second_request_frees_it() {
    let rt = runtime(2);
    let w = Workers::new(2, true);
    let hold = w.start_holding(rt.handle().clone()).unwrap().unwrap();
    for round in 0..5 {
        lone_requests_until_held(&w);
        assert_eq!(w.held(), 1, "round {round}: only the spare worker");
        // The worker left serves timers, IO and new tasks on its own.
        runtime_still_serves(&rt);
        // Two requests in flight at once free the held worker.
        let first = w.start();
        let second = w.start();
        eventually("the held worker is released", || w.held() == 0);
        drop((first, second));
        runtime_still_serves(&rt);
    }
    // The load stays crowded: nothing is held again.
    let until = Instant::now() + QUIET * 3;
    while Instant::now() < until {
        let a = w.start();
        drop((w.start(), a));
        assert_eq!(w.held(), 0, "held while requests overlap");
        std::thread::sleep(Duration::from_millis(1));
    }
    lone_requests_until_held(&w);
    w.stop();
    eventually("the stopped hold lets go", || w.held() == 0);
    hold.join().unwrap();
    // A runtime with a held worker would not shut down.
    rt.shutdown_timeout(Duration::from_secs(5));
}

#[test]
fn two_requests_in_flight_are_never_light() {
    let rt = runtime(2);
    let w = Workers::new(2, true);
    let hold = w.start_holding(rt.handle().clone()).unwrap().unwrap();
    // A stream that stays open, and lone requests beside it.
    let stream = w.start();
    let until = Instant::now() + QUIET * 3;
    while Instant::now() < until {
        drop(w.start());
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(w.held(), 0, "held beside an open stream");
    drop(stream);
    lone_requests_until_held(&w);
    w.stop();
    hold.join().unwrap();
    rt.shutdown_timeout(Duration::from_secs(5));
}

#[test]
fn nothing_is_held_when_disabled_or_alone() {
    let rt = runtime(2);
    for (workers, enabled) in [(2, false), (1, true)] {
        let w = Workers::new(workers, enabled);
        assert!(w.start_holding(rt.handle().clone()).unwrap().is_none());
        for _ in 0..50 {
            drop(w.start());
        }
        assert_eq!(w.held(), 0);
        assert_eq!(w.in_flight(), 0);
    }
}

#[test]
fn the_load_layer_counts_a_request_until_its_body_is_dropped() {
    let rt = runtime(1);
    rt.block_on(async {
        let w = Workers::new(2, true);
        let svc = LoadLayer(w.clone()).layer(tower::service_fn(|_req: http::Request<()>| async {
            Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(
                bytes::Bytes::from_static(b"answer"),
            )))
        }));
        let mut first = svc.clone();
        let call = first.ready().await.unwrap().call(http::Request::new(()));
        assert_eq!(w.in_flight(), 1, "counted from the call");
        let resp = call.await.unwrap();
        assert_eq!(w.in_flight(), 1, "still counted while the body is out");
        let other = svc.clone().oneshot(http::Request::new(())).await.unwrap();
        assert_eq!(w.in_flight(), 2);
        assert_eq!(
            w.crowded.load(Ordering::Relaxed),
            1,
            "it found one in flight"
        );
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"answer");
        assert_eq!(w.in_flight(), 1, "a read body is dropped");
        drop(other);
        assert_eq!(w.in_flight(), 0);
    });
}
