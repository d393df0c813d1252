//! The ring against its baselines, in one run so the ratios mean something
//! on a shared machine. See `benches/README.md` for the workloads.
//!
//! - `ring/throughput/<variant>/<frame size>`: a burst of frames one way,
//!   ended by a frame the far side acknowledges; each frame's payload is
//!   copied in by the sender and out by the receiver.
//! - `ring/pingpong/<variant>/<frame size>`: one frame there, the same back.
//!
//! Variants: `memcpy` (one thread copying the same bytes, L1-hot: the
//! physical limit the issue names), `memcpy-ring-sized` (the same copy
//! cycling through a ring-sized source), `inproc` (ring over private memory, peer on a thread), `xproc`
//! (ring over a memfd, peer in a `coil-ring-peer` process), `socket`
//! (a Unix socketpair to a peer process, one `write` per frame) and
//! `socket-buffered` (the same through a 64 KiB `BufWriter`).

use std::hint::black_box;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coil_ipc::{Consumer, Producer, Region};
use coil_testkit::peer::{self, Mode, TAG_END};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const SIZES: [usize; 3] = [64, 1024, 64 * 1024];
/// Ring capacity each way, unless `COIL_BENCH_RING_CAPACITY` says otherwise.
const CAPACITY: usize = 1 << 20;

fn capacity() -> usize {
    std::env::var("COIL_BENCH_RING_CAPACITY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CAPACITY)
}
const WAIT: Duration = Duration::from_secs(60);

/// One end of a ring pair, with whatever serves the other end.
struct RingPeer {
    tx: Option<Producer>,
    rx: Consumer,
    child: Option<Child>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RingPeer {
    fn new(shared: bool, mode: Mode) -> RingPeer {
        let region = if shared {
            Region::create_shared(&[capacity(), capacity()]).unwrap()
        } else {
            Region::create_private(&[capacity(), capacity()]).unwrap()
        };
        let (mut child, mut thread) = (None, None);
        if shared {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_coil-ring-peer"));
            let fd = region.inherit_into(&mut cmd).unwrap();
            let name = if mode == Mode::Echo { "echo" } else { "sink" };
            child = Some(
                cmd.arg(name)
                    .arg(fd.to_string())
                    .stdin(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
        } else {
            let r = region.clone();
            thread = Some(std::thread::spawn(move || peer::serve(&r, mode).unwrap()));
        }
        let tx = region.producer(0).unwrap();
        let rx = region.consumer(1).unwrap();
        RingPeer {
            tx: Some(tx),
            rx,
            child,
            thread,
        }
    }

    fn tx(&mut self) -> &mut Producer {
        self.tx.as_mut().expect("open")
    }
}

impl Drop for RingPeer {
    fn drop(&mut self) {
        drop(self.tx.take()); // closes ring 0: the peer returns
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A peer process on the far side of a socketpair (its standard input).
struct SocketPeer {
    w: BufWriter<UnixStream>,
    r: BufReader<UnixStream>,
    child: Child,
}

impl SocketPeer {
    fn new(echo: bool, buffered: bool) -> SocketPeer {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_coil-ring-peer"))
            .arg(if echo { "sock-echo" } else { "sock-sink" })
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .spawn()
            .unwrap();
        // Capacity 0 makes every write_all a direct write(2).
        let cap = if buffered { 1 << 16 } else { 0 };
        SocketPeer {
            w: BufWriter::with_capacity(cap, ours.try_clone().unwrap()),
            r: BufReader::with_capacity(1 << 16, ours),
            child,
        }
    }

    fn send(&mut self, frame: &[u8]) {
        self.w.write_all(frame).unwrap();
    }

    fn recv(&mut self, buf: &mut Vec<u8>) -> u16 {
        self.w.flush().unwrap();
        let mut head = [0u8; 6];
        self.r.read_exact(&mut head).unwrap();
        let len = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
        buf.resize(len, 0);
        self.r.read_exact(buf).unwrap();
        u16::from_le_bytes(head[4..].try_into().unwrap())
    }
}

impl Drop for SocketPeer {
    fn drop(&mut self) {
        let _ = self.w.flush();
        let _ = self.w.get_ref().shutdown(std::net::Shutdown::Both);
        let _ = self.child.wait();
    }
}

/// A socket frame: `u32` length, `u16` tag, payload — built once, sent with
/// one write.
fn socket_frame(tag: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(6 + payload.len());
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(&tag.to_le_bytes());
    f.extend_from_slice(payload);
    f
}

fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 31 + 7) as u8).collect()
}

/// Sends `n` frames then an end marker, and waits for the acknowledgement.
fn ring_burst(p: &mut RingPeer, data: &[u8], n: u64) {
    let tx = p.tx();
    for _ in 0..n {
        let mut w = tx.reserve_timeout(data.len(), WAIT).unwrap();
        w.append(data).unwrap();
        w.commit(1);
    }
    tx.push_timeout(TAG_END, &[], WAIT).unwrap();
    let ack = p.rx.recv_timeout(WAIT).unwrap();
    assert_eq!(ack.tag(), TAG_END);
}

fn ring_pingpong(p: &mut RingPeer, data: &[u8], buf: &mut Vec<u8>) {
    p.tx().push_timeout(2, data, WAIT).unwrap();
    let f = p.rx.recv_timeout(WAIT).unwrap();
    buf.clear();
    f.copy_into(buf);
}

fn throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring/throughput");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for size in SIZES {
        let data = payload(size);
        g.throughput(Throughput::ElementsAndBytes {
            elements: 1,
            bytes: size as u64,
        });

        g.bench_with_input(BenchmarkId::new("memcpy", size), &size, |b, _| {
            let mut dst = vec![0u8; size];
            dst.copy_from_slice(&data);
            assert_eq!(dst, data);
            b.iter(|| {
                dst.copy_from_slice(black_box(&data));
                black_box(&mut dst);
            })
        });

        // The same copies, but cycling through a source as large as the ring
        // (the ring's footprint does not stay in L1 either).
        g.bench_with_input(
            BenchmarkId::new("memcpy-ring-sized", size),
            &size,
            |b, _| {
                let src: Vec<u8> = data
                    .iter()
                    .copied()
                    .cycle()
                    .take(capacity().max(size))
                    .collect();
                let slots = src.len() / size;
                let mut dst = vec![0u8; size];
                dst.copy_from_slice(&src[..size]);
                assert_eq!(dst, data);
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) % slots;
                    dst.copy_from_slice(black_box(&src[i * size..][..size]));
                    black_box(&mut dst);
                })
            },
        );

        for (name, shared) in [("inproc", false), ("xproc", true)] {
            g.bench_with_input(BenchmarkId::new(name, size), &size, |b, _| {
                let mut p = RingPeer::new(shared, Mode::Sink);
                ring_burst(&mut p, &data, 100); // the peer acknowledges: it works
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    ring_burst(&mut p, &data, iters);
                    start.elapsed()
                })
            });
        }

        for (name, buffered) in [("socket", false), ("socket-buffered", true)] {
            let frame = socket_frame(1, &data);
            let end = socket_frame(TAG_END, &[]);
            g.bench_with_input(BenchmarkId::new(name, size), &size, |b, _| {
                let mut p = SocketPeer::new(false, buffered);
                let mut buf = Vec::new();
                p.send(&frame);
                p.send(&end);
                assert_eq!(p.recv(&mut buf), TAG_END);
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        p.send(&frame);
                    }
                    p.send(&end);
                    assert_eq!(p.recv(&mut buf), TAG_END);
                    start.elapsed()
                })
            });
        }
    }
    g.finish();
}

fn pingpong(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring/pingpong");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for size in SIZES {
        let data = payload(size);
        g.throughput(Throughput::Elements(1));
        for (name, shared) in [("inproc", false), ("xproc", true)] {
            g.bench_with_input(BenchmarkId::new(name, size), &size, |b, _| {
                let mut p = RingPeer::new(shared, Mode::Echo);
                let mut buf = Vec::new();
                ring_pingpong(&mut p, &data, &mut buf);
                assert_eq!(buf, data, "the echo peer returns the frame");
                b.iter(|| ring_pingpong(&mut p, &data, &mut buf))
            });
        }
        let frame = socket_frame(2, &data);
        g.bench_with_input(BenchmarkId::new("socket", size), &size, |b, _| {
            let mut p = SocketPeer::new(true, false);
            let mut buf = Vec::new();
            p.send(&frame);
            assert_eq!((p.recv(&mut buf), &buf), (2, &data));
            b.iter(|| {
                p.send(&frame);
                p.recv(&mut buf)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, throughput, pingpong);
criterion_main!(benches);
