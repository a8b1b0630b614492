//! Watch, end to end on real `keel` processes: the stream protocol (created,
//! canceled, compacted, progress, fragment, filters, prev_kv, ids), slow
//! readers, keel-client's resuming watch, and the nine guarantees of etcd's
//! robustness tests checked under concurrent writes, compactions and member
//! restarts.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Cluster;
use keel_client::{request_op, PutRequest, RequestOp, TxnRequest, WatchMessage, WatchOptions};
use keel_proto::etcdserverpb::watch_client::WatchClient;
use keel_proto::etcdserverpb::{
    watch_request, WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest,
    WatchResponse,
};
use keel_proto::mvccpb::Event;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// A raw watch stream: send requests, read responses.
struct Raw {
    tx: mpsc::Sender<WatchRequest>,
    rx: tonic::Streaming<WatchResponse>,
}

impl Raw {
    async fn open(url: String) -> Raw {
        let ch = tonic::transport::Endpoint::from_shared(url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let (tx, rx) = mpsc::channel(16);
        let rx = WatchClient::new(ch)
            .watch(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Raw { tx, rx }
    }
    async fn create(&self, c: WatchCreateRequest) {
        self.send(watch_request::RequestUnion::CreateRequest(c))
            .await;
    }
    async fn send(&self, r: watch_request::RequestUnion) {
        self.tx
            .send(WatchRequest {
                request_union: Some(r),
            })
            .await
            .unwrap();
    }
    async fn next(&mut self) -> WatchResponse {
        tokio::time::timeout(Duration::from_secs(10), self.rx.message())
            .await
            .expect("a watch response within 10 s")
            .unwrap()
            .expect("stream open")
    }
}

fn create(key: &str, end: &[u8], start: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: key.into(),
        range_end: end.to_vec(),
        start_revision: start,
        ..Default::default()
    }
}

fn keys(r: &WatchResponse) -> Vec<String> {
    r.events
        .iter()
        .map(|e| String::from_utf8_lossy(&e.kv.as_ref().unwrap().key).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_protocol_as_etcd() {
    let c = Cluster::start_with(
        1,
        &[
            "--experimental-watch-progress-notify-interval",
            "300ms",
            "--max-request-bytes",
            "4096",
        ],
    );
    let cl = c.client();
    let url = c.members[0].url();
    cl.put("a", "1").await.unwrap(); // rev 2
    let mut w = Raw::open(url.clone()).await;

    // Created: header revision is the current one; ids are chosen from 0.
    w.create(create("a", b"", 0)).await;
    let r = w.next().await;
    assert!(r.created && !r.canceled);
    assert_eq!((r.watch_id, r.header.unwrap().revision), (0, 2));
    // A taken id is refused: created + canceled, id -1, etcd's reason.
    w.create(WatchCreateRequest {
        watch_id: 0,
        ..create("b", b"", 0)
    })
    .await;
    let r = w.next().await;
    assert_eq!(r.watch_id, 1, "id 0 asks the server to choose");
    w.create(WatchCreateRequest {
        watch_id: 1,
        ..create("b", b"", 0)
    })
    .await;
    let r = w.next().await;
    assert!(r.created && r.canceled);
    assert_eq!(
        (r.watch_id, r.cancel_reason.as_str()),
        (-1, "mvcc: duplicate watch ID provided on the WatchStream")
    );
    // An empty range is refused.
    w.create(create("z", b"a", 0)).await;
    let r = w.next().await;
    assert!(r.canceled);
    assert_eq!(r.cancel_reason, "mvcc: watcher range is empty");

    // Events: prev_kv, and a txn's events in one response.
    w.create(WatchCreateRequest {
        prev_kv: true,
        watch_id: 10,
        ..create("p/", b"p0", 0)
    })
    .await;
    assert!(w.next().await.created);
    cl.put("a", "2").await.unwrap(); // rev 3
    let r = w.next().await;
    assert_eq!((r.watch_id, r.header.as_ref().unwrap().revision), (0, 3));
    assert_eq!(r.events[0].kv.as_ref().unwrap().value, b"2");
    assert!(r.events[0].prev_kv.is_none(), "no prev_kv unless asked");
    let put = |k: &str, v: &str| RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        })),
    };
    cl.txn(TxnRequest {
        success: vec![put("p/1", "x"), put("p/2", "y"), put("q", "z")],
        ..Default::default()
    })
    .await
    .unwrap(); // rev 4
    let r = w.next().await;
    assert_eq!(r.watch_id, 10);
    assert_eq!(
        keys(&r),
        vec!["p/1", "p/2"],
        "both events of revision 4, and not q"
    );
    cl.put("p/1", "x2").await.unwrap(); // rev 5
    let r = w.next().await;
    assert_eq!(r.events[0].prev_kv.as_ref().unwrap().value, b"x");

    // Cancel: answered once; an unknown id gets no answer.
    w.send(watch_request::RequestUnion::CancelRequest(
        WatchCancelRequest { watch_id: 10 },
    ))
    .await;
    let r = w.next().await;
    assert!(r.canceled && !r.created);
    assert_eq!(r.watch_id, 10);

    // On-demand progress: watch id -1 at the current revision.
    w.send(watch_request::RequestUnion::ProgressRequest(
        WatchProgressRequest {},
    ))
    .await;
    let r = w.next().await;
    assert_eq!(
        (r.watch_id, r.header.unwrap().revision, r.events.len()),
        (-1, 5, 0)
    );

    // History replay from a past revision, then compaction.
    let mut h = Raw::open(url.clone()).await;
    h.create(create("a", b"", 2)).await;
    assert!(h.next().await.created);
    let r = h.next().await;
    let revs: Vec<i64> = r
        .events
        .iter()
        .map(|e| e.kv.as_ref().unwrap().mod_revision)
        .collect();
    assert_eq!(revs, vec![2, 3]);
    cl.compact(5, true).await.unwrap();
    h.create(create("a", b"", 3)).await;
    assert!(h.next().await.created);
    let r = h.next().await;
    assert!(r.canceled);
    assert_eq!((r.compact_revision, r.header.unwrap().revision), (5, 0));

    // Periodic progress for progress_notify watchers with nothing to say.
    let mut p = Raw::open(url.clone()).await;
    p.create(WatchCreateRequest {
        progress_notify: true,
        ..create("quiet", b"", 0)
    })
    .await;
    assert!(p.next().await.created);
    let r = p.next().await;
    assert_eq!(
        (r.watch_id, r.events.len(), r.header.unwrap().revision),
        (0, 0, 5)
    );

    // Filters.
    let mut f = Raw::open(url.clone()).await;
    f.create(WatchCreateRequest {
        filters: vec![0],
        ..create("f", b"", 0)
    })
    .await; // NOPUT
    assert!(f.next().await.created);
    cl.put("f", "1").await.unwrap();
    cl.delete(keel_client::DeleteRangeRequest {
        key: b"f".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
    let r = f.next().await;
    assert_eq!(
        (r.events.len(), r.events[0].r#type),
        (1, 1),
        "only the delete"
    );

    // Future start revision: nothing until it is reached.
    let mut fu = Raw::open(url.clone()).await;
    let now = cl.put("fut", "0").await.unwrap().header.unwrap().revision;
    fu.create(create("fut", b"", now + 2)).await;
    assert!(fu.next().await.created);
    cl.put("fut", "1").await.unwrap();
    cl.put("fut", "2").await.unwrap();
    let r = fu.next().await;
    assert_eq!(r.events[0].kv.as_ref().unwrap().value, b"2");

    // Fragments: a response bigger than --max-request-bytes (4096): deleting 8
    // keys of 700 bytes, watched with prev_kv.
    for i in 0..8 {
        cl.put(format!("big/{i}"), "v".repeat(700)).await.unwrap();
    }
    let mut fr = Raw::open(url.clone()).await;
    fr.create(WatchCreateRequest {
        fragment: true,
        prev_kv: true,
        ..create("big/", b"big0", 0)
    })
    .await;
    assert!(fr.next().await.created);
    let mut nofr = Raw::open(url.clone()).await;
    nofr.create(WatchCreateRequest {
        prev_kv: true,
        ..create("big/", b"big0", 0)
    })
    .await;
    assert!(nofr.next().await.created);
    cl.delete(keel_client::DeleteRangeRequest {
        key: b"big/".to_vec(),
        range_end: b"big0".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut got = 0;
    let mut parts = 0;
    loop {
        let r = fr.next().await;
        got += r.events.len();
        parts += 1;
        if !r.fragment {
            break;
        }
    }
    assert_eq!(got, 8);
    assert!(
        parts > 1,
        "a 5.6 KB response over a 4 KB limit must be split"
    );
    let r = nofr.next().await;
    assert_eq!(
        (r.events.len(), r.fragment),
        (8, false),
        "without fragment a revision is never split"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_blocks_nobody_and_loses_nothing() {
    let c = Cluster::start(1);
    let cl = c.client();
    let url = c.members[0].url();
    // A watcher that does not read for a while.
    let mut slow = Raw::open(url.clone()).await;
    slow.create(create("k/", b"k0", 0)).await;
    let created = slow.next().await;
    assert!(created.created);
    // A fast one beside it, from the same revision on: `Client::watch`
    // returns before the server created the watch, and a watch "from now"
    // created after the first puts would miss them.
    let from = created.header.unwrap().revision + 1;
    let mut fast = cl
        .watch("k/", WatchOptions::prefix(b"k/").from_revision(from))
        .await
        .unwrap();
    let n = 3000;
    let value = "v".repeat(200);
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for w in 0..10 {
        let cl = cl.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..n / 10 {
                cl.put(format!("k/{w}/{i}"), value.clone()).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!(
        "{n} puts with a stalled watcher took {:?}",
        started.elapsed()
    );
    let mut fast_seen = 0;
    while fast_seen < n {
        match tokio::time::timeout(Duration::from_secs(10), fast.next())
            .await
            .unwrap()
            .unwrap()
        {
            WatchMessage::Events { events, .. } => fast_seen += events.len(),
            other => panic!("{other:?}"),
        }
    }
    // Now the slow reader drains: every revision exactly once, in order.
    let mut last = 0;
    let mut seen = 0;
    while seen < n {
        let r = slow.next().await;
        for e in &r.events {
            let rev = e.kv.as_ref().unwrap().mod_revision;
            assert!(rev > last, "revision {rev} after {last}");
            last = rev;
        }
        seen += r.events.len();
    }
    assert_eq!(seen, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keel_client_watch_resumes_after_a_member_is_lost_and_reports_compaction() {
    let mut c = Cluster::start(3);
    let cl = c.client();
    let r0 = cl.put("r/0", "0").await.unwrap().header.unwrap().revision;
    // The watch starts on a follower, which is then killed; writes go through
    // the other two members.
    let leader = c.wait_leader(Duration::from_secs(10));
    let f = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let watch_client = keel_client::Client::new(
        [
            c.members[f].endpoint(),
            c.members[other].endpoint(),
            c.members[leader].endpoint(),
        ],
        keel_client::Options::default(),
    )
    .unwrap();
    let mut w = watch_client
        .watch("r/", WatchOptions::prefix(b"r/").from_revision(r0 + 1))
        .await
        .unwrap();
    let writer = keel_client::Client::new(
        [c.members[leader].endpoint(), c.members[other].endpoint()],
        keel_client::Options::default(),
    )
    .unwrap();
    let mut expected = Vec::new();
    for i in 1..=20 {
        let rev = writer
            .put(format!("r/{i}"), format!("{i}"))
            .await
            .unwrap()
            .header
            .unwrap()
            .revision;
        expected.push(rev);
        if i == 10 {
            c.kill(f);
        }
    }
    let mut got = Vec::new();
    while got.len() < expected.len() {
        match tokio::time::timeout(Duration::from_secs(15), w.next())
            .await
            .expect("events after failover")
            .unwrap()
        {
            WatchMessage::Events { events, .. } => {
                got.extend(events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision));
            }
            WatchMessage::Progress { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        got, expected,
        "every revision exactly once across the failover"
    );

    // A watch resuming below the compaction point is told so.
    let rev = writer
        .put("r/x", "x")
        .await
        .unwrap()
        .header
        .unwrap()
        .revision;
    writer.compact(rev, true).await.unwrap();
    let mut old = writer
        .watch("r/", WatchOptions::prefix(b"r/").from_revision(2))
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(10), old.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        m,
        WatchMessage::Compacted {
            compact_revision: rev
        }
    );
    assert!(
        old.next().await.is_none(),
        "the watch ends after compaction"
    );
}

/// The events of one response, with the response's header revision, as seen.
#[derive(Clone, Debug)]
struct Seen {
    header: i64,
    events: Vec<Event>,
    progress: bool,
}

/// Checks one watcher's responses against the reference history (every event
/// of every revision, from a full watcher that saw everything) by etcd's rules.
fn check_stream(
    name: &str,
    seen: &[Seen],
    reference: &BTreeMap<i64, Vec<Event>>,
    matches: &dyn Fn(&Event) -> bool,
    start: i64,
) {
    let mut last_rev = 0;
    let mut pairs = std::collections::HashSet::new();
    let mut first_event_rev = None;
    for s in seen {
        if s.progress {
            // bookmarkable: a progress revision is >= every event sent before it
            assert!(
                s.header >= last_rev,
                "{name}: progress {} after event {last_rev}",
                s.header
            );
            last_rev = last_rev.max(s.header);
            continue;
        }
        let mut revs_in_resp = std::collections::BTreeSet::new();
        for e in &s.events {
            let kv = e.kv.as_ref().unwrap();
            let rev = kv.mod_revision;
            // ordered; and bookmarkable (events after a progress are above it)
            assert!(rev >= last_rev, "{name}: revision {rev} after {last_rev}");
            if rev == last_rev {
                assert!(
                    revs_in_resp.contains(&rev),
                    "{name}: revision {rev} split across responses"
                );
            }
            last_rev = rev;
            // unique
            assert!(
                pairs.insert((rev, kv.key.clone())),
                "{name}: ({rev}, {:?}) twice",
                kv.key
            );
            // filter
            assert!(matches(e), "{name}: event outside the watch: {e:?}");
            revs_in_resp.insert(rev);
            first_event_rev.get_or_insert(rev);
        }
        // atomic: every matching event of each revision in this response
        for rev in revs_in_resp {
            let want: Vec<&Event> = reference[&rev].iter().filter(|e| matches(e)).collect();
            let got: Vec<&Event> = s
                .events
                .iter()
                .filter(|e| e.kv.as_ref().unwrap().mod_revision == rev)
                .collect();
            assert_eq!(
                got.len(),
                want.len(),
                "{name}: revision {rev} incomplete in one response"
            );
        }
    }
    // reliable + resumable: exactly the matching reference events from start to the last seen
    let all: Vec<&Event> = seen.iter().flat_map(|s| s.events.iter()).collect();
    let want: Vec<&Event> = reference
        .range(start..=last_rev)
        .flat_map(|(_, evs)| evs.iter())
        .filter(|e| matches(e))
        .collect();
    assert_eq!(
        all.len(),
        want.len(),
        "{name}: {} events seen, {} in history",
        all.len(),
        want.len()
    );
    for (g, w) in all.iter().zip(want.iter()) {
        assert_eq!(g.kv, w.kv, "{name}: event differs from history");
        assert_eq!(g.prev_kv, w.prev_kv, "{name}: prev_kv differs from history");
        assert_eq!(g.r#type, w.r#type, "{name}");
    }
    if let (Some(first), Some(w)) = (first_event_rev, want.first()) {
        assert_eq!(
            first,
            w.kv.as_ref().unwrap().mod_revision,
            "{name}: not resumed at the first event >= {start}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guarantees_hold_under_writes_compactions_and_restarts() {
    let mut c = Cluster::start(3);
    let writer = c.client();
    writer.put("g/seed", "0").await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));

    // Reference: a prev_kv watcher of everything on member 0 (never restarted).
    let reference_client = c.member_client(0);
    let mut reference_watch = reference_client
        .watch(
            vec![0],
            WatchOptions {
                range_end: vec![0],
                prev_kv: true,
                start_revision: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();

    // Watchers under test, on members 1 and 2 (which restart), each a different kind.
    struct Spec {
        name: &'static str,
        key: &'static str,
        end: Vec<u8>,
        member: usize,
        no_put: bool,
        no_delete: bool,
    }
    let specs = vec![
        Spec {
            name: "prefix@1",
            key: "g/",
            end: b"g0".to_vec(),
            member: 1,
            no_put: false,
            no_delete: false,
        },
        Spec {
            name: "key@2",
            key: "g/3",
            end: vec![],
            member: 2,
            no_put: false,
            no_delete: false,
        },
        Spec {
            name: "nodelete@2",
            key: "g/",
            end: b"g0".to_vec(),
            member: 2,
            no_put: false,
            no_delete: true,
        },
        Spec {
            name: "noput@1",
            key: "g/",
            end: b"g0".to_vec(),
            member: 1,
            no_put: true,
            no_delete: false,
        },
        Spec {
            name: "fromkey@1",
            key: "g/5",
            end: vec![0],
            member: 1,
            no_put: false,
            no_delete: false,
        },
    ];
    let mut recorders = Vec::new();
    for s in &specs {
        let endpoints: Vec<String> = (0..3)
            .map(|i| c.members[(s.member + i) % 3].endpoint())
            .collect();
        let cl = keel_client::Client::new(endpoints, keel_client::Options::default()).unwrap();
        let mut w = cl
            .watch(
                s.key,
                WatchOptions {
                    range_end: s.end.clone(),
                    start_revision: 2,
                    no_put: s.no_put,
                    no_delete: s.no_delete,
                    prev_kv: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let stop = stop.clone();
        recorders.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut n = 0u32;
            loop {
                let m = tokio::time::timeout(Duration::from_millis(500), w.next()).await;
                match m {
                    Ok(Some(WatchMessage::Events {
                        header_revision,
                        events,
                    })) => seen.push(Seen {
                        header: header_revision,
                        events,
                        progress: false,
                    }),
                    Ok(Some(WatchMessage::Progress { revision })) => seen.push(Seen {
                        header: revision,
                        events: vec![],
                        progress: true,
                    }),
                    Ok(Some(other)) => panic!("unexpected {other:?}"),
                    Ok(None) => break,
                    Err(_) if stop.load(Ordering::Relaxed) => break,
                    Err(_) => {}
                }
                n += 1;
                if n.is_multiple_of(50) {
                    w.request_progress().await;
                }
            }
            seen
        }));
    }

    // Writers: puts, deletes and multi-key txns on g/0..g/9.
    let mut writers = Vec::new();
    for wi in 0..3u64 {
        let cl = c.client();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let k = format!("g/{}", (i * 7 + wi) % 10);
                let r = match i % 5 {
                    0..=2 => cl.put(k, format!("{wi}-{i}")).await.map(|_| ()),
                    3 => cl
                        .delete(keel_client::DeleteRangeRequest {
                            key: k.into(),
                            ..Default::default()
                        })
                        .await
                        .map(|_| ()),
                    _ => {
                        let ops = (0..3)
                            .map(|j| RequestOp {
                                request: Some(request_op::Request::RequestPut(PutRequest {
                                    key: format!("g/{}", (i + j * 3 + wi) % 10).into(),
                                    value: format!("t{wi}-{i}-{j}").into(),
                                    ..Default::default()
                                })),
                            })
                            .collect();
                        cl.txn(TxnRequest {
                            success: ops,
                            ..Default::default()
                        })
                        .await
                        .map(|_| ())
                    }
                };
                let _ = r; // errors during restarts are fine: only what was applied is checked
                i += 1;
            }
        }));
    }

    // Faults: compactions (to the revision of the round before, behind every
    // watcher) and restarts of members 1 and 2.
    let mut behind = 0;
    for round in 0..4 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let now = writer
            .put("g/mark", format!("{round}"))
            .await
            .unwrap()
            .header
            .unwrap()
            .revision;
        if behind > 0 {
            writer.compact(behind, false).await.unwrap();
        }
        behind = now;
        let victim = 1 + round % 2;
        c.kill(victim);
        tokio::time::sleep(Duration::from_millis(400)).await;
        c.spawn(victim);
        c.wait_healthy(victim, Duration::from_secs(20));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let final_rev = writer
        .put("g/end", "end")
        .await
        .unwrap()
        .header
        .unwrap()
        .revision;

    // Reference history up to final_rev.
    let mut reference: BTreeMap<i64, Vec<Event>> = BTreeMap::new();
    while reference.keys().next_back().copied().unwrap_or(0) < final_rev {
        match tokio::time::timeout(Duration::from_secs(10), reference_watch.next())
            .await
            .unwrap()
            .unwrap()
        {
            WatchMessage::Events { events, .. } => {
                for e in events {
                    reference
                        .entry(e.kv.as_ref().unwrap().mod_revision)
                        .or_default()
                        .push(e);
                }
            }
            WatchMessage::Progress { .. } => {}
            other => panic!("reference: {other:?}"),
        }
    }
    // The reference itself: prev_kv and is_create against its own replay.
    let mut state: HashMap<Vec<u8>, keel_proto::mvccpb::KeyValue> = HashMap::new();
    for (rev, evs) in &reference {
        for e in evs {
            let kv = e.kv.as_ref().unwrap();
            let prev = state.get(&kv.key).cloned();
            assert_eq!(e.prev_kv, prev, "prev_kv of {:?} at {rev}", kv.key);
            if e.r#type == 0 {
                assert_eq!(
                    kv.create_revision == kv.mod_revision,
                    prev.is_none(),
                    "is_create at {rev}"
                );
                state.insert(kv.key.clone(), kv.clone());
            } else {
                state.remove(&kv.key);
            }
        }
    }
    // Compact behind everyone, then check each watcher.
    writer.compact(final_rev - 50, true).await.unwrap();
    let mut total = 0;
    for (s, rec) in specs.iter().zip(recorders) {
        let seen = rec.await.unwrap();
        let key = s.key.as_bytes().to_vec();
        let end = s.end.clone();
        let (no_put, no_delete) = (s.no_put, s.no_delete);
        let matches = move |e: &Event| {
            let k = &e.kv.as_ref().unwrap().key;
            let in_range = if end.is_empty() {
                *k == key
            } else if end == [0] {
                *k >= key
            } else {
                *k >= key && *k < end
            };
            in_range && !(no_put && e.r#type == 0) && !(no_delete && e.r#type == 1)
        };
        check_stream(s.name, &seen, &reference, &matches, 2);
        let n: usize = seen.iter().map(|s| s.events.len()).sum();
        total += n;
        println!(
            "{}: {} events, {} progress notifications",
            s.name,
            n,
            seen.iter().filter(|s| s.progress).count()
        );
        assert!(n > 0 || s.name.starts_with("key"), "{} saw nothing", s.name);
    }
    println!(
        "{} revisions in the reference, {total} events checked",
        reference.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_without_a_leader_ends_hasleader_watches() {
    let c = Cluster::start_with(
        3,
        &["--heartbeat-interval", "50", "--election-timeout", "500"],
    );
    c.client().put("h", "1").await.unwrap();
    let leader = c.wait_leader(Duration::from_secs(10));
    let victim = (leader + 1) % 3;
    // A linearizable read on the victim: it has applied "h" = 1 before the
    // watches start from its current revision.
    assert!(c.member_client(victim).get("h").await.unwrap().is_some());
    let url = c.members[victim].url();
    let open = |with_leader: bool| {
        let url = url.clone();
        async move {
            let ch = tonic::transport::Endpoint::from_shared(url)
                .unwrap()
                .connect()
                .await
                .unwrap();
            let (tx, rx) = mpsc::channel(4);
            tx.send(WatchRequest {
                request_union: Some(watch_request::RequestUnion::CreateRequest(create(
                    "h", b"", 0,
                ))),
            })
            .await
            .unwrap();
            let mut req = tonic::Request::new(ReceiverStream::new(rx));
            if with_leader {
                req.metadata_mut()
                    .insert("hasleader", "true".parse().unwrap());
            }
            (tx, WatchClient::new(ch).watch(req).await)
        }
    };
    let (_keep1, with) = open(true).await;
    let mut with = with.unwrap().into_inner();
    let (_keep2, without) = open(false).await;
    let mut without = without.unwrap().into_inner();
    assert!(with.message().await.unwrap().unwrap().created);
    assert!(without.message().await.unwrap().unwrap().created);

    c.isolate(victim);
    // Within a few election timeouts the hasleader stream ends with etcd's error.
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match with.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("stream ended without a status"),
                Err(s) => return s,
            }
        }
    })
    .await
    .expect("the hasleader watch must end");
    assert_eq!(end.code(), tonic::Code::Unavailable);
    assert_eq!(end.message(), "etcdserver: no leader");
    // A new hasleader watch is refused at once; one without the metadata is served.
    let (_keep3, refused) = open(true).await;
    let s = refused.unwrap_err();
    assert_eq!(
        (s.code(), s.message()),
        (tonic::Code::Unavailable, "etcdserver: no leader")
    );
    let (_keep4, served) = open(false).await;
    assert!(
        served
            .unwrap()
            .into_inner()
            .message()
            .await
            .unwrap()
            .unwrap()
            .created
    );
    // The watch without hasleader is still open and gets events after healing.
    c.heal(victim);
    c.client().put("h", "2").await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), without.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(r.events[0].kv.as_ref().unwrap().value, b"2");
}
