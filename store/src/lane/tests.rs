//! The Raft lane between two ends in one process: a receiver (member 1)
//! behind a loopback listener, and a link from member 2. Each end's node is
//! a bare command channel, so the test sees what would reach Raft: the
//! messages stepped on one side, the unreachable reports on the other.

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use raft::eraftpb::{Entry, MessageType};

use super::*;
use crate::consensus::{self, Command};
use crate::membership::{Change, Member};
use crate::mvcc::{MemoryBackend, Store};

const CLUSTER: u64 = 7;

type Rx = crossbeam_channel::Receiver<Command<()>>;

fn node(id: u64) -> (Node<()>, Rx) {
    consensus::channel(id, Duration::from_secs(1), Duration::from_millis(50))
}

/// Members 1, 2 and 3, as `local` sees them; `removed` applied first.
fn membership(local: u64, removed: Option<u64>) -> Arc<Membership> {
    let store = Store::open(Arc::new(MemoryBackend::new())).unwrap();
    let member = |id: u64| Member {
        id,
        name: format!("m{id}"),
        peer_urls: vec![format!("http://127.0.0.1:{}", 1000 + id)],
        client_urls: Vec::new(),
        is_learner: false,
    };
    Membership::bootstrap(&store, &[member(1), member(2), member(3)]).unwrap();
    let m = Membership::open(&store, local).unwrap();
    if let Some(id) = removed {
        let mut txn = store.write();
        let staged = m.apply(&mut txn, &Change::Remove(id)).unwrap();
        txn.end(1).unwrap();
        m.commit(staged);
    }
    Arc::new(m)
}

/// Member 1's receiving end on a loopback port; returns its URL.
fn receiver(
    cluster_id: u64,
    removed: Option<u64>,
) -> (String, Arc<LaneReceiver<()>>, Rx, Arc<LinkFilter>) {
    let (node, rx) = node(1);
    let filter = Arc::new(LinkFilter::default());
    let r = LaneReceiver::new(cluster_id, 1, node, filter.clone(), membership(1, removed));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepting = r.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            match conn {
                Ok(c) => accepting.accept(c),
                Err(_) => return,
            }
        }
    });
    (url, r, rx, filter)
}

struct Sender {
    ctx: LinkContext<()>,
    rx: Rx,
    activity: Arc<Activity>,
    membership: Arc<Membership>,
}

/// Member 2's side of a link to member 1.
fn sender(cluster_id: u64) -> Sender {
    let (node, rx) = node(2);
    let activity = Arc::new(Activity::new(Arc::new(LinkFilter::default())));
    let membership = membership(2, None);
    Sender {
        ctx: LinkContext {
            cluster_id,
            me: 2,
            peer: 1,
            node,
            activity: activity.clone(),
            membership: membership.clone(),
        },
        rx,
        activity,
        membership,
    }
}

fn append(index: u64, bytes: usize) -> Message {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgAppend);
    m.from = 2;
    m.to = 1;
    m.term = 3;
    m.index = index;
    let e = Entry {
        index: index + 1,
        data: vec![(index % 251) as u8; bytes].into(),
        ..Default::default()
    };
    m.set_entries(vec![e].into());
    m
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The messages stepped into `rx` within `d`.
fn stepped(rx: &Rx, want: usize, d: Duration) -> Vec<Message> {
    let deadline = Instant::now() + d;
    let mut got = Vec::new();
    while got.len() < want {
        match rx.recv_deadline(deadline) {
            Ok(Command::Step(m)) => got.push(*m),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    got
}

fn unreachable_reported(rx: &Rx, peer: u64) -> bool {
    rx.try_iter()
        .any(|c| matches!(c, Command::Unreachable(p) if p == peer))
}

/// Starts `s`'s link to `url` and waits until it is up.
fn link_up(s: Sender, url: String) -> (LaneLink, Rx) {
    let activity = s.activity.clone();
    let link = LaneLink::start(s.ctx, vec![url]).unwrap();
    wait_until("the link is up", || activity.active_since(1).is_some());
    (link, s.rx)
}

/// A lane from `s` to `url` that shook hands, in blocking mode, whose reads
/// give up after 5 s.
fn dialled(s: &Sender, url: &str) -> TcpStream {
    let Ok(conn) = dial(&s.ctx, url) else {
        panic!("dial failed")
    };
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn
}

/// Whether the other end closed `conn`.
fn closed(conn: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    conn.read(&mut byte).unwrap() == 0
}

#[test]
fn a_frame_holds_one_message() {
    let m = append(41, 300);
    let mut out = vec![9, 9];
    frame(&m, &mut out);
    frame(&m, &mut out);
    let len = u32::from_be_bytes(out[2..6].try_into().unwrap()) as usize;
    assert_eq!(out.len(), 2 + 2 * (4 + len));
    let back = Message::parse_from_bytes(&out[6..6 + len]).unwrap();
    assert_eq!(back, m);
}

#[test]
fn messages_arrive_in_order_through_a_backlog() {
    let (url, _r, rx1, _) = receiver(CLUSTER, None);
    let (link, rx2) = link_up(sender(CLUSTER), url);
    // 64 MiB at once is more than the socket takes: most of it goes through
    // the backlog and the link's thread, behind what was written directly.
    let n = 2048u64;
    let mut frames = Vec::new();
    for i in 0..n {
        frames.clear();
        frame(&append(i, 32 * 1024), &mut frames);
        assert!(link.send(&frames), "message {i} refused");
    }
    let got = stepped(&rx1, n as usize, Duration::from_secs(30));
    assert_eq!(got.len(), n as usize);
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.index, i as u64, "out of order");
        assert_eq!(m.entries[0].data.len(), 32 * 1024);
        assert_eq!(m.entries[0].data[0], (i % 251) as u8);
    }
    assert!(!unreachable_reported(&rx2, 1));
}

#[test]
fn another_cluster_is_refused_with_etcds_message() {
    let (url, _r, rx1, _) = receiver(CLUSTER, None);
    let s = sender(CLUSTER + 1);
    match dial(&s.ctx, &url) {
        Err(Refusal::Refused(why)) => {
            assert_eq!(why, "request cluster ID mismatch (local 7, remote 8)")
        }
        Err(Refusal::Down(why) | Refusal::Removed(why) | Refusal::NotLane(why)) => {
            panic!("wrong refusal: {why}")
        }
        Ok(_) => panic!("a member of another cluster was accepted"),
    }
    // Nor does a link get up, or step anything.
    let link = LaneLink::start(s.ctx, vec![url]).unwrap();
    assert!(!link.send(&[]), "a refused link counts as down");
    wait_until("the refusal is reported", || unreachable_reported(&s.rx, 1));
    assert!(s.activity.active_since(1).is_none());
    assert!(stepped(&rx1, 1, Duration::from_millis(200)).is_empty());
}

#[test]
fn a_removed_member_is_told_and_marks_itself_removed() {
    let (url, _r, _rx1, _) = receiver(CLUSTER, Some(2));
    let s = sender(CLUSTER);
    match dial(&s.ctx, &url) {
        Err(Refusal::Removed(why)) => assert_eq!(why, Error::Removed.to_string()),
        _ => panic!("a removed member was not told so"),
    }
    let membership = s.membership.clone();
    let _link = LaneLink::start(s.ctx, vec![url]).unwrap();
    wait_until("the member marks itself removed", || {
        membership.local_removed()
    });
}

#[test]
fn a_new_connection_from_a_member_closes_its_old_one() {
    let (url, _r, rx1, _) = receiver(CLUSTER, None);
    let s = sender(CLUSTER);
    let mut old = dialled(&s, &url);
    let mut new = dialled(&s, &url);
    assert!(closed(&mut old), "the old connection is closed");
    let mut frames = Vec::new();
    frame(&append(5, 10), &mut frames);
    new.write_all(&frames).unwrap();
    let got = stepped(&rx1, 1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].index, 5);
}

#[test]
fn a_cut_link_steps_nothing_and_a_healed_one_steps_again() {
    let (url, _r, rx1, filter) = receiver(CLUSTER, None);
    let (link, _rx2) = link_up(sender(CLUSTER), url);
    filter.block([2]);
    let mut frames = Vec::new();
    frame(&append(1, 10), &mut frames);
    assert!(link.send(&frames));
    assert!(stepped(&rx1, 1, Duration::from_millis(300)).is_empty());
    filter.heal();
    frames.clear();
    frame(&append(2, 10), &mut frames);
    assert!(link.send(&frames));
    let got = stepped(&rx1, 1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].index, 2);
}

#[test]
fn a_peer_that_is_down_drops_messages_and_is_reported() {
    // A port that was just free: nothing listens there.
    let url = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let s = sender(CLUSTER);
    let link = LaneLink::start(s.ctx, vec![url]).unwrap();
    let mut frames = Vec::new();
    frame(&append(1, 10), &mut frames);
    assert!(
        !link.send(&frames),
        "a message to a peer that is down is dropped"
    );
    wait_until("the peer is reported unreachable", || {
        unreachable_reported(&s.rx, 1)
    });
    assert!(s.activity.active_since(1).is_none());
}

#[test]
fn a_stopped_member_closes_the_connections_it_accepted() {
    let (url, r, _rx1, _) = receiver(CLUSTER, None);
    let s = sender(CLUSTER);
    let mut conn = dialled(&s, &url);
    r.close_all();
    assert!(closed(&mut conn), "the connection is closed");
    // And a later one is not served.
    assert!(matches!(dial(&s.ctx, &url), Err(Refusal::Down(_))));
}

/// A peer port that serves gRPC alone (a keel from before the lane).
fn grpc_only_port() -> (String, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let url = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (_reporter, health) = tonic_health::server::health_reporter();
        let router = tonic::transport::Server::builder().add_service(health);
        tokio::spawn(crate::tls::serve(
            router,
            listener,
            None,
            crate::tls::Port::Peer,
            None,
            std::future::pending(),
        ));
        url
    });
    (url, rt)
}

#[test]
fn a_peer_without_the_lane_is_left_to_the_grpc_stream() {
    let (url, _rt) = grpc_only_port();
    let s = sender(CLUSTER);
    assert!(
        matches!(dial(&s.ctx, &url), Err(Refusal::NotLane(_))),
        "an HTTP/2 server's answer is not a lane's"
    );
    let link = LaneLink::start(s.ctx, vec![url]).unwrap();
    wait_until("the link gives up", || link.unsupported());
    assert!(s.activity.active_since(1).is_none());
}

#[test]
fn bad_frames_close_the_lane_and_step_nothing() {
    let (url, _r, rx1, _) = receiver(CLUSTER, None);
    let s = sender(CLUSTER);
    let garbage: &[u8] = &[0, 0, 0, 3, 0xff, 0xff, 0xff];
    let too_long = (MAX_FRAME as u32 + 1).to_be_bytes();
    for bad in [garbage, &too_long[..]] {
        let mut conn = dialled(&s, &url);
        conn.write_all(bad).unwrap();
        assert!(closed(&mut conn), "the lane is closed");
    }
    assert!(stepped(&rx1, 1, Duration::from_millis(200)).is_empty());
}
