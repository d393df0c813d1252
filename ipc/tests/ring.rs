//! The ring's conformance suite: every test runs once over private memory
//! and once over a shared memfd, through the public API only.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use coil_ipc::{FrameError, Region, RingPushError, RingRecvError, WaitStrategy};
use proptest::prelude::*;

/// Generous liveness bound for anything that should happen "promptly".
const WATCHDOG: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug)]
enum Backing {
    Private,
    Shared,
}

fn region(backing: Backing, caps: &[usize]) -> Region {
    match backing {
        Backing::Private => Region::create_private(caps).unwrap(),
        Backing::Shared => Region::create_shared(caps).unwrap(),
    }
}

/// Deterministic payload for frame number `seq`: its length and bytes are a
/// function of `seq`, so the receiver can check each frame without a copy of
/// what was sent.
fn payload(seq: u64, max: usize) -> Vec<u8> {
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let len = (next() % (max as u64 + 1)) as usize;
    (0..len).map(|_| next() as u8).collect()
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod private_memory {
            $( #[test] fn $name() { super::$name(super::Backing::Private) } )*
        }
        mod shared_memory {
            $( #[test] fn $name() { super::$name(super::Backing::Shared) } )*
        }
    };
}

conformance!(
    push_then_recv_preserves_bytes_and_tag,
    frames_of_every_size_from_zero_to_capacity_round_trip,
    push_fails_when_full_and_succeeds_after_a_release,
    try_recv_on_empty_ring_returns_none,
    frame_larger_than_ring_is_refused_without_waiting,
    wrap_around_pads_and_keeps_frames_contiguous,
    commit_may_be_shorter_than_the_reservation,
    abandoned_writer_leaves_nothing_behind,
    writer_refuses_writes_past_its_reservation,
    closed_producer_delivers_pending_frames_then_reports_closed,
    closing_consumer_wakes_a_producer_waiting_for_room,
    dropping_producer_wakes_a_parked_consumer,
    recv_times_out_on_an_empty_ring,
    dead_peer_is_reported_while_waiting,
    unflushed_commits_are_invisible_until_flush,
    threads_exchange_random_frames_in_order,
    threads_exchange_random_frames_in_order_parking_at_once,
);

/// Pushes from the consumer's own thread: a frame that must wrap can only go
/// in after the consumer skipped the padding, which its next receive does.
fn push_same_thread(
    tx: &mut coil_ipc::Producer,
    rx: &mut coil_ipc::Consumer,
    tag: u16,
    data: &[u8],
) {
    match tx.try_push(tag, data) {
        Err(RingPushError::Full) => {
            assert!(rx.try_recv().unwrap().is_none(), "ring was not drained");
            tx.try_push(tag, data)
                .expect("a drained ring takes any frame up to its maximum");
        }
        other => other.unwrap(),
    }
}

fn push_then_recv_preserves_bytes_and_tag(b: Backing) {
    let r = region(b, &[4096]);
    let (mut tx, mut rx) = (r.producer(0).unwrap(), r.consumer(0).unwrap());
    tx.try_push(42, b"hello, ring").unwrap();
    let f = rx.try_recv().unwrap().unwrap();
    assert_eq!(f.tag(), 42);
    assert_eq!(f.len(), 11);
    assert_eq!(f.to_vec(), b"hello, ring");
    let mut buf = [0u8; 4];
    f.read_at(7, &mut buf).unwrap();
    assert_eq!(&buf, b"ring");
    assert!(f.read_at(8, &mut buf).is_err());
}

fn frames_of_every_size_from_zero_to_capacity_round_trip(b: Backing) {
    let r = region(b, &[256]);
    let (mut tx, mut rx) = (r.producer(0).unwrap(), r.consumer(0).unwrap());
    assert_eq!(tx.max_frame_len(), 248);
    for len in 0..=tx.max_frame_len() {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        push_same_thread(&mut tx, &mut rx, len as u16, &data);
        let f = rx.try_recv().unwrap().expect("frame");
        assert_eq!((f.tag() as usize, f.to_vec()), (len, data));
    }
}

fn push_fails_when_full_and_succeeds_after_a_release(b: Backing) {
    let r = region(b, &[1024]);
    let (mut tx, mut rx) = (r.producer(0).unwrap(), r.consumer(0).unwrap());
    // 56-byte payloads occupy 64 bytes: exactly 16 fit.
    let mut pushed = 0;
    loop {
        match tx.try_push(pushed, &[pushed as u8; 56]) {
            Ok(()) => pushed += 1,
            Err(RingPushError::Full) => break,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(pushed, 16);
    assert_eq!(rx.try_recv().unwrap().unwrap().tag(), 0);
    rx.flush();
    tx.try_push(99, &[0; 56]).unwrap();
    assert_eq!(tx.try_push(100, &[0; 56]), Err(RingPushError::Full));
    for tag in (1..16).chain([99]) {
        assert_eq!(rx.try_recv().unwrap().unwrap().tag(), tag);
    }
    assert!(rx.try_recv().unwrap().is_none());
}

fn try_recv_on_empty_ring_returns_none(b: Backing) {
    let r = region(b, &[64]);
    let mut rx = r.consumer(0).unwrap();
    let _tx = r.producer(0).unwrap();
    assert!(rx.try_recv().unwrap().is_none());
}

fn frame_larger_than_ring_is_refused_without_waiting(b: Backing) {
    let r = region(b, &[1024]);
    let mut tx = r.producer(0).unwrap();
    let _rx = r.consumer(0).unwrap();
    let start = Instant::now();
    let err = tx
        .reserve_timeout(1017, Duration::from_secs(60))
        .unwrap_err();
    assert_eq!(
        err,
        RingPushError::TooLarge {
            len: 1017,
            max: 1016
        }
    );
    assert!(
        start.elapsed() < WATCHDOG,
        "a too-large frame must not wait for room"
    );
    assert!(err.to_string().contains("1017") && err.to_string().contains("1016"));
    tx.try_push(0, &[1; 1016]).unwrap();
}

fn wrap_around_pads_and_keeps_frames_contiguous(b: Backing) {
    let r = region(b, &[512]);
    let (mut tx, mut rx) = (r.producer(0).unwrap(), r.consumer(0).unwrap());
    // Sizes chosen so that frames repeatedly end a few bytes before the end.
    for round in 0..200u64 {
        let len = [100, 200, 37, 300, 0, 504][round as usize % 6];
        let data = payload(round, 0)
            .into_iter()
            .chain((0..len).map(|i| (i as u64 ^ round) as u8))
            .collect::<Vec<_>>();
        push_same_thread(&mut tx, &mut rx, round as u16, &data);
        let f = rx.try_recv().unwrap().unwrap();
        assert_eq!((f.tag(), f.to_vec()), (round as u16, data));
    }
}

fn commit_may_be_shorter_than_the_reservation(b: Backing) {
    let r = region(b, &[1024]);
    let (mut tx, mut rx) = (r.producer(0).unwrap(), r.consumer(0).unwrap());
    let mut w = tx.try_reserve(500).unwrap();
    w.append(b"abc").unwrap();
    w.write_at(10, b"z").unwrap();
    assert_eq!(w.len(), 11);
    w.commit(3);
    tx.flush();
    let f = rx.try_recv().unwrap().unwrap();
    assert_eq!(f.len(), 11);
    assert_eq!(&f.to_vec()[..3], b"abc");
    assert_eq!(f.to_vec()[10], b'z');
}

fn abandoned_writer_leaves_nothing_behind(b: Backing) {
    let r = region(b, &[1024]);
    let (mut tx, mut rx) = (r.producer(0).unwrap(), r.consumer(0).unwrap());
    {
        let mut w = tx.try_reserve(100).unwrap();
        w.append(&[9; 100]).unwrap();
    }
    tx.flush();
    assert!(rx.try_recv().unwrap().is_none());
    tx.try_push(1, b"x").unwrap();
    assert_eq!(rx.try_recv().unwrap().unwrap().to_vec(), b"x");
}

fn writer_refuses_writes_past_its_reservation(b: Backing) {
    let r = region(b, &[1024]);
    let mut tx = r.producer(0).unwrap();
    let mut w = tx.try_reserve(8).unwrap();
    assert!(w.append(&[0; 9]).is_err());
    assert!(w.write_at(5, &[0; 4]).is_err());
    assert!(w.write_at(usize::MAX, &[0; 4]).is_err());
    w.append(&[0; 8]).unwrap();
    assert!(w.append(&[0]).is_err());
}

fn closed_producer_delivers_pending_frames_then_reports_closed(b: Backing) {
    let r = region(b, &[1024]);
    let (mut tx, mut rx) = (r.producer(0).unwrap(), r.consumer(0).unwrap());
    let mut w = tx.try_reserve(4).unwrap();
    w.append(b"last").unwrap();
    w.commit(0); // not flushed: close must publish it
    drop(tx);
    assert_eq!(rx.recv_timeout(WATCHDOG).unwrap().to_vec(), b"last");
    assert_eq!(
        rx.recv_timeout(WATCHDOG).unwrap_err(),
        RingRecvError::Closed
    );
    assert_eq!(rx.try_recv().unwrap_err(), RingRecvError::Closed);
}

fn closing_consumer_wakes_a_producer_waiting_for_room(b: Backing) {
    let r = region(b, &[256]);
    let (mut tx, rx) = (r.producer(0).unwrap(), r.consumer(0).unwrap());
    tx.try_push(0, &[0; 248]).unwrap();
    let closer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        drop(rx);
    });
    // A lost wake-up fails here at the watchdog, as a timeout.
    assert_eq!(
        tx.push_timeout(1, &[0; 8], WATCHDOG),
        Err(RingPushError::Closed)
    );
    closer.join().unwrap();
}

fn dropping_producer_wakes_a_parked_consumer(b: Backing) {
    let r = region(b, &[256]);
    let (tx, mut rx) = (r.producer(0).unwrap(), r.consumer(0).unwrap());
    rx.set_wait_strategy(WaitStrategy::park_immediately());
    let closer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        drop(tx);
    });
    // A lost wake-up fails here at the watchdog, as a timeout.
    assert_eq!(
        rx.recv_timeout(WATCHDOG).unwrap_err(),
        RingRecvError::Closed
    );
    closer.join().unwrap();
}

fn recv_times_out_on_an_empty_ring(b: Backing) {
    let r = region(b, &[256]);
    let (_tx, mut rx) = (r.producer(0).unwrap(), r.consumer(0).unwrap());
    let start = Instant::now();
    let err = rx.recv_timeout(Duration::from_millis(30)).unwrap_err();
    assert!(matches!(err, RingRecvError::Timeout { .. }), "{err}");
    assert!(start.elapsed() >= Duration::from_millis(30));
}

fn dead_peer_is_reported_while_waiting(b: Backing) {
    let r = region(b, &[256]);
    let (mut tx, mut rx) = (r.producer(0).unwrap(), r.consumer(0).unwrap());
    let deadline = Instant::now() + Duration::from_millis(40);
    rx.set_peer_watch(move || Instant::now() < deadline);
    // A peer check that is never made fails here at the watchdog.
    assert_eq!(
        rx.recv_timeout(WATCHDOG).unwrap_err(),
        RingRecvError::PeerDead
    );
    tx.try_push(0, &[0; 248]).unwrap();
    tx.set_peer_watch(|| false);
    assert_eq!(
        tx.push_timeout(0, &[0; 8], WATCHDOG),
        Err(RingPushError::PeerDead)
    );
}

fn unflushed_commits_are_invisible_until_flush(b: Backing) {
    let r = region(b, &[4096]);
    let (mut tx, mut rx) = (r.producer(0).unwrap(), r.consumer(0).unwrap());
    for i in 0..10u16 {
        let mut w = tx.try_reserve(2).unwrap();
        w.append(&i.to_le_bytes()).unwrap();
        w.commit(i);
    }
    assert!(rx.try_recv().unwrap().is_none(), "nothing published yet");
    tx.flush();
    for i in 0..10u16 {
        assert_eq!(rx.try_recv().unwrap().unwrap().tag(), i);
    }
}

/// Frames per threaded run. Shrink for slow runs.
const THREADED_FRAMES: u64 = 200_000;

fn exchange(b: Backing, wait: WaitStrategy) {
    let r = region(b, &[1 << 14]);
    let (mut tx, mut rx) = (r.producer(0).unwrap(), r.consumer(0).unwrap());
    tx.set_wait_strategy(wait);
    rx.set_wait_strategy(wait);
    let max = 3000;
    let producer = std::thread::spawn(move || {
        for seq in 0..THREADED_FRAMES {
            let data = payload(seq, max);
            let mut w = tx.reserve_timeout(data.len(), WATCHDOG).unwrap();
            w.append(&data).unwrap();
            w.commit(seq as u16);
            // Flush at irregular intervals to exercise batched publication.
            if seq % 7 == 0 || seq % 11 == 3 {
                tx.flush();
            }
        }
    });
    let mut buf = Vec::new();
    for seq in 0..THREADED_FRAMES {
        let f = rx.recv_timeout(WATCHDOG).unwrap();
        assert_eq!(f.tag(), seq as u16);
        buf.clear();
        f.copy_into(&mut buf);
        assert_eq!(buf, payload(seq, max), "frame {seq}");
    }
    producer.join().unwrap();
    assert_eq!(
        rx.recv_timeout(WATCHDOG).unwrap_err(),
        RingRecvError::Closed
    );
}

fn threads_exchange_random_frames_in_order(b: Backing) {
    exchange(b, WaitStrategy::default());
}

fn threads_exchange_random_frames_in_order_parking_at_once(b: Backing) {
    exchange(b, WaitStrategy::park_immediately());
}

#[derive(Debug, Clone)]
enum Op {
    Push(usize),
    Reserve { reserve: usize, write: usize },
    Flush,
    Recv,
    ConsumerFlush,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..=248).prop_map(Op::Push),
        1 => (0usize..=248).prop_flat_map(|r| (Just(r), 0..=r)).prop_map(|(reserve, write)| Op::Reserve { reserve, write }),
        1 => Just(Op::Flush),
        4 => Just(Op::Recv),
        1 => Just(Op::ConsumerFlush),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Random single-threaded sequences of pushes, reservations, flushes and
    /// receives agree with a `VecDeque` model: frames arrive in commit order,
    /// each once, and every frame flushed so far is visible. (Commits may
    /// also become visible early: a quarter-full batch publishes itself.)
    #[test]
    fn ring_agrees_with_a_vecdeque_oracle(shared in any::<bool>(), ops in prop::collection::vec(op(), 1..400)) {
        let r = region(if shared { Backing::Shared } else { Backing::Private }, &[256]);
        let (mut tx, mut rx) = (r.producer(0).unwrap(), r.consumer(0).unwrap());
        let mut sent: VecDeque<(u16, Vec<u8>)> = VecDeque::new();
        let mut must_be_visible = 0usize;
        let mut seq = 0u16;
        for op in ops {
            match op {
                Op::Push(_) | Op::Reserve { .. } => {
                    let (reserve, len) = match op {
                        Op::Reserve { reserve, write } => (reserve, write),
                        Op::Push(len) => (len, len),
                        _ => unreachable!(),
                    };
                    let data: Vec<u8> = (0..len).map(|i| (i as u16 ^ seq) as u8).collect();
                    match tx.try_reserve(reserve) {
                        Ok(mut w) => {
                            w.append(&data).unwrap();
                            w.commit(seq);
                            sent.push_back((seq, data));
                            seq = seq.wrapping_add(1);
                            if matches!(op, Op::Push(_)) {
                                tx.flush();
                                must_be_visible = sent.len();
                            }
                        }
                        Err(RingPushError::Full) => {}
                        Err(e) => prop_assert!(false, "unexpected {}", e),
                    }
                }
                Op::Flush => {
                    tx.flush();
                    must_be_visible = sent.len();
                }
                Op::Recv => match rx.try_recv().unwrap() {
                    Some(f) => {
                        prop_assert_eq!(Some((f.tag(), f.to_vec())), sent.pop_front());
                        must_be_visible = must_be_visible.saturating_sub(1);
                    }
                    None => prop_assert_eq!(must_be_visible, 0, "a flushed frame is missing"),
                },
                Op::ConsumerFlush => rx.flush(),
            }
        }
        tx.flush();
        while let Some(f) = rx.try_recv().unwrap() {
            prop_assert_eq!(Some((f.tag(), f.to_vec())), sent.pop_front());
        }
        prop_assert!(sent.is_empty(), "{} frames lost", sent.len());
    }
}

#[test]
fn corruption_error_names_position_length_and_capacity() {
    let e = FrameError::Corrupt {
        position: 4096,
        len: 9000,
        available: 8192,
        capacity: 8192,
    };
    assert_eq!(
        e.to_string(),
        "frame at position 4096 claims 9000 bytes but ring holds 8192 there (capacity 8192)"
    );
}
