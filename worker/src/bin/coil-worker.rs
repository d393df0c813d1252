//! `coil-worker`: one pooled Python worker process; spawned by `coil-host`.
fn main() -> std::process::ExitCode {
    coil_worker::worker_main(std::env::args().skip(1))
}
