//! `coil sql --cluster`: the same statements on a Ballista cluster of
//! `coil-scheduler` and `coil-executor` (on 127.0.0.1, started with
//! `--tls`) print what the single-node run prints and write the same
//! file; a client without the cluster's key is told how to pass it; and
//! an executor never imports an inline source from a directory another
//! user can write.
//!
//! The programs are coil-ballista's, built beside `coil` by the
//! workspace's build (tools/test).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::coil;

const PATIENCE: Duration = Duration::from_secs(120);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// coil-ballista's program `name`, beside `coil`.
fn program(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_coil")).with_file_name(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace (tools/test does: cargo build -p coil-ballista)",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scheduler and one executor, killed when dropped.
struct Cluster {
    children: Vec<Child>,
    dir: PathBuf,
    port: u16,
}

impl Cluster {
    /// Started with the TLS directory `tls`; the executor's temporary
    /// directory is `tmp`.
    fn start(dir: &Path, tls: &Path, tmp: &Path) -> Cluster {
        let port = free_port();
        let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
        let scheduler = Command::new(program("coil-scheduler"))
            .args(["--port", &port.to_string(), "--tls"])
            .arg(tls)
            .stdout(Stdio::null())
            .stderr(log("scheduler.log"))
            .spawn()
            .unwrap();
        let mut cluster = Cluster {
            children: vec![scheduler],
            dir: dir.to_owned(),
            port,
        };
        cluster.wait_for("scheduler.log", "listening on");
        let executor = Command::new(program("coil-executor"))
            .args(["--scheduler-port", &port.to_string()])
            .args(["--port", &free_port().to_string()])
            .args(["--grpc-port", &free_port().to_string()])
            .args(["--vcores", "2", "--conf", "python.worker-count=1", "--tls"])
            .arg(tls)
            .env("TMPDIR", tmp)
            .env_remove("XDG_RUNTIME_DIR")
            .stdout(Stdio::null())
            .stderr(log("executor.log"))
            .spawn()
            .unwrap();
        cluster.children.push(executor);
        cluster.wait_for("scheduler.log", "registered from");
        cluster
    }

    fn wait_for(&mut self, log: &str, what: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = std::fs::read_to_string(self.dir.join(log)).unwrap_or_default();
            if text.contains(what) {
                eprintln!("{log}: {}", text.lines().last().unwrap_or(""));
                return;
            }
            for c in &mut self.children {
                if let Some(status) = c.try_wait().unwrap() {
                    panic!("a cluster program exited ({status}): {text}");
                }
            }
            assert!(
                Instant::now() < deadline,
                "{log} never said {what:?}: {text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self) -> String {
        format!("df://127.0.0.1:{}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "coil sql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn coil_sql_on_a_cluster_prints_and_writes_what_it_does_on_one_machine() {
    let scratch = std::env::temp_dir().join(format!("coil-sql-cluster-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let tls = scratch.join("tls");
    let made = Command::new(program("coil-scheduler"))
        .arg("make-tls")
        .arg(&tls)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );

    // What another user plants in the executor's temporary directory,
    // where coil used to write inline sources: a module that leaves a
    // mark and answers wrong, under every name coil ever gave one.
    let tmp = scratch.join("tmp");
    let mark = scratch.join("planted-code-ran");
    let body = "def twice(x):\n    return 2 * x\n";
    crate::util::plant_old_inline_source(&tmp, body, "twice", &mark);

    let cluster = Cluster::start(&scratch, &tls, &tmp);
    let sql = format!(
        "CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true');\n\
         CREATE FUNCTION twice(BIGINT) RETURNS BIGINT LANGUAGE PYTHON AS $${body}$$;\n\
         SELECT id, slug(title) AS slug, twice(stars) AS t FROM p ORDER BY id;",
        root().join("examples/data/products.csv").display()
    );
    let udf = "slug=examples/udfs/sql.py:slug";
    let url = cluster.url();
    let tls_arg = tls.to_str().unwrap();
    let here = ok(&coil(&["sql", "--udf", udf], &sql));
    let there = ok(&coil(
        &["sql", "--udf", udf, "--cluster", &url, "--tls", tls_arg],
        &sql,
    ));
    assert_eq!(there.lines().count(), 1_000 + 4, "{there}");
    assert_eq!(there, here);
    assert!(!mark.exists(), "the planted module ran on the executor");

    // --output is written by the client, the same bytes as on one machine.
    let (a, b) = (scratch.join("here.jsonl"), scratch.join("there.jsonl"));
    ok(&coil(
        &["sql", "--udf", udf, "--output", a.to_str().unwrap()],
        &sql,
    ));
    ok(&coil(
        &[
            "sql",
            "--udf",
            udf,
            "--cluster",
            &url,
            "--tls",
            tls_arg,
            "--output",
            b.to_str().unwrap(),
        ],
        &sql,
    ));
    let written = std::fs::read_to_string(&b).unwrap();
    assert_eq!(written.lines().count(), 1_000);
    assert_eq!(written, std::fs::read_to_string(&a).unwrap());

    // The credential may come from the environment.
    let count = format!(
        "SELECT count(*) AS n FROM '{}'",
        root().join("examples/data/products.csv").display()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_coil"))
        .args(["sql", "--cluster", &url, &count])
        .current_dir(root())
        .env("COIL_CLUSTER_TLS", &tls)
        .output()
        .unwrap();
    assert!(ok(&out).contains("| 1000 |"));

    // Without it: refused, and told what to pass.
    let out = coil(&["sql", "--udf", udf, "--cluster", &url], &sql);
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("without --tls: {err}");
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("reaching the cluster at {url}")),
        "{err}"
    );
    assert!(err.contains("pass --tls DIR"), "{err}");
    drop(cluster);
    std::fs::remove_dir_all(&scratch).unwrap();
}
