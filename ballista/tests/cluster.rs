//! A Ballista cluster of processes on 127.0.0.1 (`coil-scheduler` and two
//! `coil-executor`s) runs Python UDFs a client created after the cluster
//! started: the rows are split across the executors and are exactly the
//! single-node run's; killing one executor's coil workers during a query
//! loses nothing; and no process is left behind.

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coil_ballista::{remote_session, ClusterTls};
use coil_datafusion::datafusion;
use coil_datafusion::{python_session_with, PythonOptions};
use coil_host::{Config, WorkerCommand};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::prelude::{SessionConfig, SessionContext};

/// A liveness bound for waits; nothing here should take long.
const PATIENCE: Duration = Duration::from_secs(120);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, child: &mut Child) {
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("a cluster process exited ({status}) before it listened on {port}");
        }
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The parent of process `pid`, from /proc.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn children_of(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| parent_of(p) == Some(parent))
        .collect()
}

fn alive(pid: u32) -> bool {
    // A zombie has exited; only its parent's wait is missing.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

struct Cluster {
    scheduler: Child,
    executors: Vec<Child>,
    port: u16,
    dir: PathBuf,
}

impl Cluster {
    /// A scheduler and `n` executors (1 vcore each, so tasks spread).
    fn start(n: usize) -> Cluster {
        Cluster::start_with(n, "plain", None)
    }

    /// The same, every program holding the cluster TLS directory `tls`.
    fn start_with(n: usize, name: &str, tls: Option<&Path>) -> Cluster {
        let dir = std::env::temp_dir().join(format!("coil-ballista-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let mut scheduler = Command::new(env!("CARGO_BIN_EXE_coil-scheduler"));
        scheduler.args(["--port", &port.to_string()]);
        if let Some(tls) = tls {
            scheduler.arg("--tls").arg(tls);
        }
        let mut scheduler = scheduler
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("scheduler.log")).unwrap())
            .spawn()
            .unwrap();
        wait_for_port(port, &mut scheduler);
        let mut cluster = Cluster {
            scheduler,
            executors: Vec::new(),
            port,
            dir,
        };
        for i in 0..n {
            let mut e = cluster.executor(&format!("executor-{i}"));
            if let Some(tls) = tls {
                // The credential may come from the environment too.
                if i % 2 == 1 {
                    e.env("COIL_CLUSTER_TLS", tls);
                } else {
                    e.arg("--tls").arg(tls);
                }
            }
            cluster.executors.push(e.spawn().unwrap());
            cluster.wait_for_log("scheduler.log", "registered from", i + 1);
        }
        cluster
    }

    /// An executor's command, its log `NAME.log` in the cluster's
    /// directory (the credential is the caller's to add).
    fn executor(&self, name: &str) -> Command {
        let (flight, grpc) = (free_port(), free_port());
        let work = self.dir.join(format!("work-{name}"));
        std::fs::create_dir_all(&work).unwrap();
        let mut e = Command::new(env!("CARGO_BIN_EXE_coil-executor"));
        e.args(["--scheduler-port", &self.port.to_string()])
            .args(["--port", &flight.to_string()])
            .args(["--grpc-port", &grpc.to_string()])
            .args(["--vcores", "1", "--work-dir", work.to_str().unwrap()])
            .args(["--conf", "python.worker-count=1"])
            .env_remove("COIL_CLUSTER_TLS")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap());
        e
    }

    /// How many lines of the cluster's log `name` contain `what`.
    fn log_count(&self, name: &str, what: &str) -> usize {
        std::fs::read_to_string(self.dir.join(name))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(what))
            .count()
    }

    /// Waits until `count` lines of log `name` contain `what`.
    fn wait_for_log(&self, name: &str, what: &str, count: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.log_count(name, what) < count {
            assert!(
                Instant::now() < deadline,
                "{name} never said {what:?} {count} times\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self) -> String {
        format!("df://127.0.0.1:{}", self.port)
    }

    fn executor_pids(&self) -> BTreeSet<u32> {
        self.executors.iter().map(Child::id).collect()
    }

    /// The cluster's processes' logs, for a failure message.
    fn logs(&self) -> String {
        let mut out = String::new();
        for e in std::fs::read_dir(&self.dir).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "log") {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                out += &format!("--- {}\n", e.path().display());
                for l in tail.into_iter().rev() {
                    out += l;
                    out += "\n";
                }
            }
        }
        out
    }

    fn stop(&mut self) {
        for c in self
            .executors
            .iter_mut()
            .chain(std::iter::once(&mut self.scheduler))
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = c.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Four Parquet files of `x` (BIGINT) and `s` (its decimal text), 0..rows.
fn write_parquet(dir: &Path, rows: i64, rt: &tokio::runtime::Runtime) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let ctx = SessionContext::new();
    rt.block_on(async {
        for k in 0..4 {
            let (a, b) = (k * rows / 4, (k + 1) * rows / 4);
            ctx.sql(&format!(
                "COPY (SELECT value AS x, CAST(value AS VARCHAR) AS s FROM range({a}, {b})) \
                 TO '{}' STORED AS PARQUET",
                data.join(format!("part-{k}.parquet")).display()
            ))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        }
    });
    data
}

/// The UDFs, created with SQL after the cluster started: inline sources
/// and a file (whose text travels to the executors).
fn setup(data: &Path) -> Vec<String> {
    vec![
        format!(
            "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '{}/'",
            data.display()
        ),
        "CREATE FUNCTION py_inc(BIGINT) RETURNS BIGINT LANGUAGE PYTHON AS $$\n\
         def py_inc(x):\n    return x + 1\n$$"
            .into(),
        "CREATE FUNCTION host_pid(BIGINT) RETURNS BIGINT LANGUAGE PYTHON AS $$\n\
         import os\ndef host_pid(x):\n    return os.getppid()\n$$"
            .into(),
        format!(
            "CREATE FUNCTION slug() LANGUAGE PYTHON AS '{}:slug'",
            root().join("examples/udfs/sql.py").display()
        ),
    ]
}

async fn run(ctx: &SessionContext, sql: &str) -> datafusion::error::Result<Vec<RecordBatch>> {
    ctx.sql(sql).await?.collect().await
}

fn column_i64(batches: &[RecordBatch], i: usize) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| b.column(i).as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

fn column_str(batches: &[RecordBatch], i: usize) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let c = cast(b.column(i), &DataType::Utf8).unwrap();
            let c = c.as_string::<i32>();
            (0..c.len())
                .map(|r| c.value(r).to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A client's options: process mode, workers being the executor program
/// (the client starts a UDF once when it is created, to check it loads).
fn options(pairs: &[&str]) -> PythonOptions {
    let mut c = Config::default();
    for p in pairs {
        c.set_pair(p).unwrap();
    }
    PythonOptions::new(c)
        .with_worker(WorkerCommand::new(env!("CARGO_BIN_EXE_coil-executor")).arg("worker"))
}

#[test]
fn python_udfs_created_by_a_client_run_on_executors_that_never_saw_them() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut cluster = Cluster::start(2);
    let data = write_parquet(&cluster.dir, 8_000, &rt);
    let query = "SELECT x, py_inc(x) AS y, slug(concat('A ', s, '!')) AS z, host_pid(x) AS p \
                 FROM t ORDER BY x";

    // Single node, for the expected rows.
    let local = python_session_with(
        options(&["python.worker-count=1"]),
        SessionConfig::new().with_target_partitions(2),
    );
    let expected = rt.block_on(async {
        for s in setup(&data) {
            run(&local, &s).await.unwrap();
        }
        run(&local, query).await.unwrap()
    });

    let ctx = rt
        .block_on(remote_session(
            &cluster.url(),
            options(&["python.worker-count=1"]),
            None,
        ))
        .unwrap();
    let got = rt.block_on(async {
        for s in setup(&data) {
            run(&ctx, &s).await.unwrap();
        }
        // Executors register a moment after they listen: retry the first
        // query until the cluster takes it.
        let deadline = Instant::now() + PATIENCE;
        loop {
            match run(&ctx, query).await {
                Ok(b) => break b,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => panic!("{e}\n{}", cluster.logs()),
            }
        }
    });
    assert_eq!(column_i64(&got, 0), column_i64(&expected, 0));
    assert_eq!(column_i64(&got, 1), column_i64(&expected, 1));
    assert_eq!(column_str(&got, 2), column_str(&expected, 2));
    assert_eq!(column_i64(&got, 0), (0..8_000).collect::<Vec<i64>>());
    // Rows ran in both executors' workers (a worker's parent is its
    // executor), not in the client.
    let hosts: BTreeSet<u32> = column_i64(&got, 3).into_iter().map(|p| p as u32).collect();
    assert_eq!(hosts, cluster.executor_pids(), "{}", cluster.logs());

    // SET reaches the executors: retries for batches whose worker died.
    // Kill one executor's workers while a slow query runs: coil replaces
    // them inside the executor and the query's answer is exact.
    let answer = rt.block_on(async {
        run(&ctx, "SET python.fn_execution.retries = 1")
            .await
            .unwrap();
        run(
            &ctx,
            "CREATE FUNCTION slow(BIGINT) RETURNS BIGINT LANGUAGE PYTHON AS $$\n\
             import time\ndef slow(x):\n    time.sleep(0.001)\n    return 2 * x\n$$",
        )
        .await
        .unwrap();
        let victim = cluster.executors[0].id();
        // Other UDFs' idle workers are the executor's children already:
        // only a worker started for `slow` is killed, once it is busy.
        let before: BTreeSet<u32> = children_of(victim).into_iter().collect();
        let killer = std::thread::spawn(move || {
            let deadline = Instant::now() + PATIENCE;
            loop {
                let new: Vec<u32> = children_of(victim)
                    .into_iter()
                    .filter(|p| !before.contains(p))
                    .collect();
                if !new.is_empty() || Instant::now() > deadline {
                    std::thread::sleep(Duration::from_millis(500));
                    for &pid in &new {
                        nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid as i32),
                            nix::sys::signal::Signal::SIGKILL,
                        )
                        .unwrap();
                    }
                    break new;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let answer = run(&ctx, "SELECT sum(slow(x)) AS s, count(*) AS n FROM t").await;
        let killed = killer.join().unwrap();
        assert!(!killed.is_empty(), "no worker of executor {victim} to kill");
        answer.unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()))
    });
    assert_eq!(column_i64(&answer, 0), vec![2 * (0..8_000i64).sum::<i64>()]);
    assert_eq!(column_i64(&answer, 1), vec![8_000]);

    // Nothing left behind: the executors' workers go with them.
    let workers: Vec<u32> = cluster
        .executor_pids()
        .into_iter()
        .flat_map(children_of)
        .collect();
    assert!(!workers.is_empty());
    drop(ctx);
    drop(local);
    cluster.stop();
    let deadline = Instant::now() + PATIENCE;
    while workers.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<u32> = workers.into_iter().filter(|&p| alive(p)).collect();
    assert!(left.is_empty(), "workers left running: {left:?}");
}

#[test]
fn python_aggregates_and_window_functions_are_exact_across_two_executors() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut cluster = Cluster::start(2);
    let data = write_parquet(&cluster.dir, 8_000, &rt);
    let marker = cluster.dir.join("killed");
    // Aggregates run with the options they were created under: SET first.
    let setup = vec![
        "SET python.fn_execution.retries = 1".to_string(),
        format!(
            "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '{}/'",
            data.display()
        ),
        "CREATE FUNCTION py_sum(BIGINT) RETURNS BIGINT LANGUAGE PYTHON AS $$\n\
         class py_sum:\n    def create_accumulator(self):\n        return [0]\n\
         \x20   def accumulate(self, acc, v):\n        acc[0] += v\n\
         \x20   def merge(self, acc, accs):\n        for a in accs:\n            acc[0] += a[0]\n\
         \x20   def get_value(self, acc):\n        return acc[0]\n$$"
            .to_string(),
        format!(
            "CREATE FUNCTION killed_sum(BIGINT) RETURNS BIGINT LANGUAGE PYTHON AS $$\n\
             import os, signal\n\
             class killed_sum:\n    def create_accumulator(self):\n        return [0]\n\
             \x20   def accumulate(self, acc, v):\n\
             \x20       if v == 6000 and not os.path.exists({marker:?}):\n\
             \x20           open({marker:?}, 'w').close()\n\
             \x20           os.kill(os.getpid(), signal.SIGKILL)\n\
             \x20       acc[0] += v\n\
             \x20   def merge(self, acc, accs):\n        for a in accs:\n            acc[0] += a[0]\n\
             \x20   def get_value(self, acc):\n        return acc[0]\n$$",
            marker = marker.display().to_string()
        ),
        "CREATE FUNCTION frame_sum(BIGINT) RETURNS BIGINT LANGUAGE PYTHON AS $$\n\
         def frame_sum(v):\n    return sum(v)\nframe_sum.coil_kind = 'window'\n$$"
            .to_string(),
    ];
    let grouped =
        "SELECT x % 10 AS k, py_sum(x) AS s, killed_sum(x) AS t FROM t GROUP BY x % 10 ORDER BY k";
    let window = "SELECT x, frame_sum(x) OVER (PARTITION BY x % 3 ORDER BY x ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS f FROM t ORDER BY x";
    let ctx = rt
        .block_on(remote_session(
            &cluster.url(),
            options(&["python.worker-count=1"]),
            None,
        ))
        .unwrap();
    let (g, w) = rt.block_on(async {
        for s in &setup {
            run(&ctx, s).await.unwrap();
        }
        let deadline = Instant::now() + PATIENCE;
        let g = loop {
            match run(&ctx, grouped).await {
                Ok(b) => break b,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => panic!("{e}\n{}", cluster.logs()),
            }
        };
        let w = run(&ctx, window)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
        (g, w)
    });
    let want: Vec<i64> = (0..10)
        .map(|k| (0..8_000i64).filter(|x| x % 10 == k).sum())
        .collect();
    assert_eq!(column_i64(&g, 0), (0..10).collect::<Vec<i64>>());
    assert_eq!(column_i64(&g, 1), want);
    assert_eq!(column_i64(&g, 2), want, "exact after the killed worker");
    assert!(marker.exists(), "a worker was killed mid-aggregate");
    let want: Vec<i64> = (0..8_000i64)
        .map(|x| (0..3).map(|d| x - 3 * d).filter(|y| *y >= 0).sum())
        .collect();
    assert_eq!(column_i64(&w, 1), want);
    drop(ctx);
    cluster.stop();
}

/// `coil-scheduler make-tls DIR`, checked.
fn make_tls(dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_coil-scheduler"))
        .arg("make-tls")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_cluster_started_with_tls_serves_its_members_and_refuses_everyone_else() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let keys = std::env::temp_dir().join(format!("coil-ballista-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&keys);
    let (ours, theirs) = (keys.join("ours"), keys.join("theirs"));
    make_tls(&ours);
    make_tls(&theirs);
    let cluster = Cluster::start_with(2, "tls", Some(&ours));
    let data = write_parquet(&cluster.dir, 4_000, &rt);
    let query = "SELECT x, py_inc(x) AS y, host_pid(x) AS p FROM t ORDER BY x";
    let session = |tls: Option<&Path>| {
        let tls = tls.map(|d| ClusterTls::load(d).unwrap());
        rt.block_on(remote_session(
            &cluster.url(),
            options(&["python.worker-count=1"]),
            tls.as_ref(),
        ))
        .unwrap()
    };

    // A member runs the query on both executors, exactly.
    let ctx = session(Some(&ours));
    let got = rt.block_on(async {
        for s in setup(&data) {
            run(&ctx, &s).await.unwrap();
        }
        run(&ctx, query)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()))
    });
    eprintln!(
        "a member's query: {} rows",
        got.iter().map(|b| b.num_rows()).sum::<usize>()
    );
    assert_eq!(column_i64(&got, 0), (0..4_000).collect::<Vec<i64>>());
    assert_eq!(column_i64(&got, 1), (1..4_001).collect::<Vec<i64>>());
    let hosts: BTreeSet<u32> = column_i64(&got, 2).into_iter().map(|p| p as u32).collect();
    assert_eq!(hosts, cluster.executor_pids(), "{}", cluster.logs());

    // A client without the credential, or with another cluster's, is
    // refused at the TLS handshake: before any plan is read.
    for (who, tls) in [
        ("no credential", None),
        ("another cluster's", Some(theirs.as_path())),
    ] {
        let ctx = session(tls);
        let e = rt.block_on(async {
            for s in setup(&data) {
                run(&ctx, &s).await.unwrap();
            }
            run(&ctx, query).await.unwrap_err()
        });
        eprintln!("a client with {who}: {e}");
        let e = e.to_string();
        // A connection-level failure (no RPC was answered), not an error
        // from a query the scheduler read.
        assert!(e.contains("Transport"), "{who}: {e}");
    }

    // An executor without the credential, or with another cluster's,
    // cannot register: it tries, fails and the scheduler never names it.
    for (name, tls) in [("stranger", None), ("impostor", Some(theirs.as_path()))] {
        let mut e = cluster.executor(name);
        if let Some(tls) = tls {
            e.arg("--tls").arg(tls);
        }
        let mut child = e.spawn().unwrap();
        let deadline = Instant::now() + PATIENCE;
        let log = format!("{name}.log");
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if cluster.log_count(&log, "rror") > 0 {
                break None;
            }
            assert!(
                Instant::now() < deadline,
                "{name} neither failed nor exited"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let _ = child.kill();
        let _ = child.wait();
        let text = std::fs::read_to_string(cluster.dir.join(&log)).unwrap();
        eprintln!(
            "executor {name}: exit {status:?}: {}",
            text.lines().last().unwrap_or("")
        );
        assert!(status.is_none_or(|s| !s.success()), "{name}: {text}");
        assert_eq!(
            cluster.log_count("scheduler.log", "registered from"),
            2,
            "{}",
            cluster.logs()
        );
    }

    // Beyond loopback, no program starts without TLS or --insecure.
    for program in [
        env!("CARGO_BIN_EXE_coil-scheduler"),
        env!("CARGO_BIN_EXE_coil-executor"),
    ] {
        let out = Command::new(program)
            .args(["--bind-host", "0.0.0.0", "--port", &free_port().to_string()])
            .env_remove("COIL_CLUSTER_TLS")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!("{program} --bind-host 0.0.0.0: {err}");
        assert!(!out.status.success());
        assert!(
            err.contains("refusing to listen on 0.0.0.0 without --tls"),
            "{err}"
        );
    }
    drop(ctx);
    drop(cluster);
    std::fs::remove_dir_all(&keys).unwrap();
}
