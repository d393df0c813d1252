//! The ring demo: this program re-runs itself as a child process, hands it a
//! sealed `memfd` holding two rings, and streams frames through them.
//!
//! 1. A checksummed exchange: 200,000 frames of random sizes each way at
//!    once; the child checks every frame it gets, the parent every frame it
//!    gets back.
//! 2. Throughput to the child at 64 B, 1 KiB and 64 KiB frames, the child
//!    reading every byte in place.
//!
//! ```text
//! cargo run --release -p coil-testkit --example ring_demo
//! ```

use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use coil_ipc::{PidWatch, Region};
use coil_testkit::peer::{serve, Mode, TAG_END};
use coil_testkit::stream;

const EXCHANGE_FRAMES: u64 = 200_000;
const EXCHANGE_MAX: usize = 2000;
const TIMEOUT: Duration = Duration::from_secs(60);

/// Kills and reaps the child however the demo ends.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(region: &Region, mode: &[&str]) -> anyhow::Result<Peer> {
    let mut cmd = Command::new(std::env::current_exe()?);
    let fd = region
        .inherit_into(&mut cmd)
        .context("the region is shared")?;
    cmd.arg("--peer")
        .arg(fd.to_string())
        .args(mode)
        .stdin(Stdio::null());
    Ok(Peer(cmd.spawn().context("spawning the child")?))
}

fn exchange() -> anyhow::Result<()> {
    let region = Region::create_shared(&[1 << 20, 1 << 20])?;
    let mut peer = spawn(
        &region,
        &[
            "verify",
            &EXCHANGE_FRAMES.to_string(),
            &EXCHANGE_MAX.to_string(),
        ],
    )?;
    let (mut tx, mut rx) = (region.producer(0)?, region.consumer(1)?);
    tx.set_peer_watch(PidWatch::new(peer.0.id())?);
    rx.set_peer_watch(PidWatch::new(peer.0.id())?);
    let start = Instant::now();
    let sender = std::thread::spawn(move || -> anyhow::Result<()> {
        let mut buf = Vec::new();
        for seq in 0..EXCHANGE_FRAMES {
            stream::fill(seq, EXCHANGE_MAX, &mut buf);
            tx.push_timeout(seq as u16, &buf, TIMEOUT)?;
        }
        tx.close();
        Ok(())
    });
    let mut buf = Vec::new();
    for seq in 0..EXCHANGE_FRAMES {
        let frame = rx.recv_timeout(TIMEOUT)?;
        buf.clear();
        frame.copy_into(&mut buf);
        stream::check(seq, EXCHANGE_MAX, &buf).map_err(anyhow::Error::msg)?;
    }
    sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender panicked"))??;
    if !peer.0.wait()?.success() {
        bail!("the child found a lost, duplicated, reordered or corrupted frame");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "exchange: {EXCHANGE_FRAMES} checksummed frames (0..{EXCHANGE_MAX} B) each way, all verified, in {:.0} ms",
        secs * 1e3
    );
    Ok(())
}

fn throughput(size: usize) -> anyhow::Result<()> {
    let region = Region::create_shared(&[1 << 20, 4096])?;
    let peer = spawn(&region, &["sink"])?;
    let (mut tx, mut rx) = (region.producer(0)?, region.consumer(1)?);
    tx.set_peer_watch(PidWatch::new(peer.0.id())?);
    rx.set_peer_watch(PidWatch::new(peer.0.id())?);
    let payload = vec![0x5au8; size];
    let frames = ((256usize << 20) / size.max(256)).max(1000);
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let start = Instant::now();
        for _ in 0..frames {
            let mut w = tx.reserve_timeout(size, TIMEOUT)?;
            w.append(&payload)?;
            w.commit(0);
        }
        tx.push_timeout(TAG_END, &[], TIMEOUT)?;
        drop(rx.recv_timeout(TIMEOUT)?);
        best = best.min(start.elapsed().as_secs_f64());
    }
    let per = best / frames as f64;
    println!(
        "{:>6} B frames: {:>7.1} ns/frame  {:>6.2} M frames/s  {:>6.2} GiB/s",
        size,
        per * 1e9,
        1e-6 / per,
        size as f64 / per / (1u64 << 30) as f64
    );
    Ok(())
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--peer") {
        let fd: i32 = args.get(1).context("--peer FD")?.parse()?;
        let mode = match args.get(2).map(String::as_str) {
            Some("sink") => Mode::Sink,
            Some("verify") => Mode::Verify {
                n: args.get(3).context("verify N MAX")?.parse()?,
                max: args.get(4).context("verify N MAX")?.parse()?,
            },
            other => bail!("unknown peer mode {other:?}"),
        };
        // SAFETY: our parent passed this descriptor down with
        // `Region::inherit_into`; nothing else in this process owns it.
        let region = unsafe { Region::from_inherited_fd(fd) }?;
        return serve(&region, mode).map_err(|e| anyhow::anyhow!(e));
    }
    println!(
        "coil ring demo: parent {} and a child process over one sealed memfd",
        std::process::id()
    );
    exchange()?;
    println!("throughput to the child (1 MiB ring, best of 3):");
    for size in [64, 1024, 64 * 1024] {
        throughput(size)?;
    }
    println!(
        "benchmarks against a Unix socketpair and memcpy: cargo bench -p coil-testkit --bench ring"
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ring_demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}
