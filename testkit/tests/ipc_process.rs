//! Rings across a process boundary, against the `coil-ring-peer` binary.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coil_ipc::{PidWatch, Region, RingPushError, RingRecvError};
use coil_testkit::stream;

/// Frames each way in the exchange test (the issue asks for at least 1 M).
const EXCHANGE_FRAMES: u64 = 1_000_000;
/// Largest frame in the exchange test, bytes.
const EXCHANGE_MAX: usize = 600;
/// Generous bound for anything that should happen promptly.
const WATCHDOG: Duration = Duration::from_secs(120);

/// A child process that is killed and reaped when the test ends, however
/// it ends.
struct Peer(Child);

impl Peer {
    fn spawn(region: &Region, args: &[&str]) -> Peer {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_coil-ring-peer"));
        let fd = region.inherit_into(&mut cmd).expect("shared region");
        cmd.arg(args[0])
            .arg(fd.to_string())
            .args(&args[1..])
            .stdin(Stdio::null());
        Peer(cmd.spawn().expect("spawn coil-ring-peer"))
    }

    /// Waits for the child to exit, up to the watchdog.
    fn wait(&mut self) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < WATCHDOG, "peer did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn processes_exchange_a_million_checksummed_frames_each_way() {
    let region = Region::create_shared(&[1 << 16, 1 << 16]).unwrap();
    let mut peer = Peer::spawn(
        &region,
        &[
            "verify",
            &EXCHANGE_FRAMES.to_string(),
            &EXCHANGE_MAX.to_string(),
        ],
    );
    let mut tx = region.producer(0).unwrap();
    let mut rx = region.consumer(1).unwrap();
    tx.set_peer_watch(PidWatch::new(peer.0.id()).unwrap());
    rx.set_peer_watch(PidWatch::new(peer.0.id()).unwrap());
    let sender = std::thread::spawn(move || {
        let mut buf = Vec::new();
        for seq in 0..EXCHANGE_FRAMES {
            stream::fill(seq, EXCHANGE_MAX, &mut buf);
            let mut w = tx.reserve_timeout(buf.len(), WATCHDOG).unwrap();
            w.append(&buf).unwrap();
            w.commit(seq as u16);
        }
    });
    let mut buf = Vec::new();
    for seq in 0..EXCHANGE_FRAMES {
        let frame = rx.recv_timeout(WATCHDOG).unwrap();
        buf.clear();
        frame.copy_into(&mut buf);
        if let Err(e) = stream::check(seq, EXCHANGE_MAX, &buf) {
            panic!("{e}");
        }
    }
    assert_eq!(
        rx.recv_timeout(WATCHDOG).unwrap_err(),
        RingRecvError::Closed,
        "no extra frames"
    );
    sender.join().unwrap();
    assert!(
        peer.wait().success(),
        "the peer found a lost, duplicated, reordered or corrupted frame"
    );
}

#[test]
fn killed_peer_makes_a_waiting_receiver_fail_before_its_timeout() {
    let region = Region::create_shared(&[4096, 4096]).unwrap();
    let peer = Peer::spawn(&region, &["hold"]);
    let mut rx = region.consumer(1).unwrap();
    rx.set_peer_watch(PidWatch::new(peer.0.id()).unwrap());
    let pid = nix::unistd::Pid::from_raw(peer.0.id() as i32);
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    });
    let timeout = Duration::from_secs(600);
    let start = Instant::now();
    assert_eq!(
        rx.recv_timeout(timeout).unwrap_err(),
        RingRecvError::PeerDead
    );
    assert!(start.elapsed() < WATCHDOG);
    killer.join().unwrap();
}

#[test]
fn killed_peer_makes_a_producer_waiting_for_room_fail_before_its_timeout() {
    let region = Region::create_shared(&[4096, 4096]).unwrap();
    let peer = Peer::spawn(&region, &["hold"]);
    let mut tx = region.producer(0).unwrap();
    tx.set_peer_watch(PidWatch::new(peer.0.id()).unwrap());
    while tx.try_push(0, &[0; 1000]).is_ok() {}
    let pid = nix::unistd::Pid::from_raw(peer.0.id() as i32);
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    });
    assert_eq!(
        tx.push_timeout(0, &[0; 1000], Duration::from_secs(600)),
        Err(RingPushError::PeerDead)
    );
    killer.join().unwrap();
}

#[test]
fn peer_that_closes_is_reported_promptly_while_it_still_runs() {
    let region = Region::create_shared(&[4096, 4096]).unwrap();
    let mut peer = Peer::spawn(&region, &["close"]);
    let mut rx = region.consumer(1).unwrap();
    let mut tx = region.producer(0).unwrap();
    rx.set_peer_watch(PidWatch::new(peer.0.id()).unwrap());
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(600)).unwrap_err(),
        RingRecvError::Closed
    );
    // Fill the ring: the closed consumer shows up when we need room.
    let err = loop {
        if let Err(e) = tx.push_timeout(0, &[0; 1000], Duration::from_secs(600)) {
            break e;
        }
    };
    assert_eq!(err, RingPushError::Closed);
    assert!(
        peer.0.try_wait().unwrap().is_none(),
        "the peer closed its ends but is still running"
    );
}

#[test]
fn peer_refuses_a_descriptor_that_is_not_a_sealed_region() {
    let out = Command::new(env!("CARGO_BIN_EXE_coil-ring-peer"))
        .args(["sink", "0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("opening the inherited region"), "{err}");
}
