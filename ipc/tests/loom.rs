//! Loom models of the ring's publish / consume / wake protocol.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p coil-ipc --test loom --release`
//! (`.ci/run` does). Under `--cfg loom` the ring's atomics are loom's, and a
//! futex wait is a yielding spin on the doorbell that ignores its timeout, so
//! a lost wake-up shows up as a model that never completes.
//!
//! Cost: each model explores every interleaving up to the preemption bound
//! below; a bound of 2 keeps a run to seconds, 3 to minutes.
#![cfg(loom)]

use std::time::Duration;

use coil_ipc::{Region, RingRecvError, WaitStrategy};

const PREEMPTIONS: usize = 2;
const FOREVER: Duration = Duration::from_secs(3600);

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(PREEMPTIONS);
    b.check(f);
}

/// Frames pushed by one thread arrive in order at the other, and a consumer
/// that parks is always woken: the producer never misses the waiting flag.
#[test]
fn consumer_parks_and_is_woken_for_every_frame() {
    model(|| {
        let region = Region::create_private(&[64]).unwrap();
        let mut tx = region.producer(0).unwrap();
        let mut rx = region.consumer(0).unwrap();
        tx.set_wait_strategy(WaitStrategy::park_immediately());
        rx.set_wait_strategy(WaitStrategy::park_immediately());
        // The producer stays open until the consumer has everything, so the
        // wake-ups must come from publication, not from close.
        let done = loom::sync::Arc::new(loom::sync::atomic::AtomicBool::new(false));
        let done2 = done.clone();
        let t = loom::thread::spawn(move || {
            for i in 0..2u8 {
                tx.push_timeout(u16::from(i), &[i; 3], FOREVER).unwrap();
            }
            while !done2.load(loom::sync::atomic::Ordering::Acquire) {
                loom::thread::yield_now();
            }
        });
        for i in 0..2u8 {
            let f = rx.recv_timeout(FOREVER).unwrap();
            assert_eq!((f.tag(), f.to_vec()), (u16::from(i), vec![i; 3]));
        }
        done.store(true, loom::sync::atomic::Ordering::Release);
        t.join().unwrap();
        assert_eq!(rx.recv_timeout(FOREVER).unwrap_err(), RingRecvError::Closed);
    });
}

/// A producer that fills the ring parks for room and is woken by the
/// consumer's release; frames that must wrap (padding) survive it.
#[test]
fn producer_parks_for_room_and_is_woken_by_release() {
    model(|| {
        let region = Region::create_private(&[64]).unwrap();
        let mut tx = region.producer(0).unwrap();
        let mut rx = region.consumer(0).unwrap();
        tx.set_wait_strategy(WaitStrategy::park_immediately());
        rx.set_wait_strategy(WaitStrategy::park_immediately());
        let t = loom::thread::spawn(move || {
            // 40-byte frames occupy 48 of 64 bytes: every second one wraps.
            for i in 0..3u8 {
                tx.push_timeout(u16::from(i), &[i; 40], FOREVER).unwrap();
            }
        });
        for i in 0..3u8 {
            let f = rx.recv_timeout(FOREVER).unwrap();
            assert_eq!((f.tag(), f.to_vec()), (u16::from(i), vec![i; 40]));
        }
        t.join().unwrap();
    });
}
