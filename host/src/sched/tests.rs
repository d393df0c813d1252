//! The scheduler against fakes: executors that answer, fail, die, hang and
//! fall back on cue, driven by a script.

use super::*;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use super::batch::FIRST_BATCH;
use super::recover::FREE_RESENDS;
use crate::error::WorkerExit;
use crate::Config;
use coil_proto::PyErrorInfo;

#[test]
fn batches_are_sized_from_the_measured_time_per_row_unless_the_size_is_set() {
    let ms = Duration::from_millis;
    let us = Duration::from_micros;
    let ns = Duration::from_nanos;
    // Nothing measured yet: a small first batch, within the bound.
    assert_eq!(batch_rows(1000, false, ms(5), None), FIRST_BATCH);
    assert_eq!(batch_rows(4, false, ms(5), None), 4);
    // A ~1 ms UDF: five rows make 5 ms.
    assert_eq!(batch_rows(1000, false, ms(5), Some(ms(1))), 5);
    // Slower than the target: one row at a time.
    assert_eq!(batch_rows(1000, false, ms(5), Some(ms(80))), 1);
    // `x + 1`: the bound, as before adaptive sizing.
    assert_eq!(batch_rows(1000, false, ms(5), Some(ns(60))), 1000);
    assert_eq!(batch_rows(1000, false, ms(5), Some(us(10))), 500);
    assert_eq!(
        batch_rows(1000, false, ms(5), Some(Duration::ZERO)),
        FIRST_BATCH
    );
    // Set by the user: always that size.
    assert_eq!(batch_rows(1000, true, ms(5), Some(ms(1))), 1000);
    assert_eq!(batch_rows(7, true, ms(5), None), 7);
}

/// What a fake executor does with a batch.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Act {
    /// Answers every row with `x + 1`.
    Answer,
    /// The UDF raises on the batch's first row.
    Raise,
    /// Raises the sub-interpreter incompatibility on its first row.
    Incompatible,
    /// Dies running the batch: it and everything behind it get no
    /// answer.
    Die,
    /// Dies before it started the batch's first row.
    DieUnstarted,
    /// The row holding [`POISON`] raises (alone, in a per-row batch);
    /// other batches are answered.
    PoisonRaises,
    /// The row holding [`POISON`] kills its executor; the executor
    /// names it as the row running (for a vectorized UDF: the batch's
    /// first row, as a real executor does).
    PoisonKills,
    /// The row holding [`POISON`] runs past the timeout in a process:
    /// the executor is killed.
    PoisonHangs,
}

/// The value that [`Act::PoisonRaises`] and friends fail on.
const POISON: i64 = 13;

/// The fakes' shared state: what each pool does with which batch, and
/// what happened.
struct World {
    /// (pool, seq, attempt) → what to do; default `Answer`.
    script: Box<dyn Fn(usize, u64, u32) -> Act>,
    /// The pool new work goes to (0 until a fall-back, then 1).
    active: Cell<usize>,
    fallbacks: Cell<u32>,
    /// Leases handed out, per pool.
    leased: RefCell<[usize; 2]>,
    /// How often each (seq) was answered with results, and by which pool.
    computed: RefCell<HashMap<u64, Vec<usize>>>,
    /// Times each seq was run (any outcome).
    runs: RefCell<HashMap<u64, u32>>,
    replaced: Cell<u32>,
    discarded: Cell<u32>,
    /// The most batches one executor ever held at once.
    deepest: Cell<usize>,
}

struct Fake {
    world: Rc<World>,
    tuning: Tuning,
    counters: Counters,
    kind: UdfKind,
}

struct FakeLease {
    world: Rc<World>,
    kind: UdfKind,
    per_row: bool,
    id: usize,
    pool: usize,
    /// Batches in its ring, in order: (seq, rows, encoded payload).
    ring: VecDeque<(u64, Vec<Row>)>,
    dead: bool,
}

impl Executors for Fake {
    type Lease = FakeLease;
    fn tuning(&self) -> &Tuning {
        &self.tuning
    }
    fn counters(&self) -> &Counters {
        &self.counters
    }
    fn mode(&self) -> ExecutionMode {
        [ExecutionMode::SubInterpreter, ExecutionMode::Process][self.world.active.get()]
    }
    fn kind(&self) -> UdfKind {
        self.kind
    }
    fn batch_size(&self) -> usize {
        self.tuning.bundle_size
    }
    fn max_payload(&self) -> usize {
        self.tuning.max_message
    }
    fn lease(&self, wait: bool) -> Option<FakeLease> {
        let pool = self.world.active.get();
        let mut leased = self.world.leased.borrow_mut();
        if leased[pool] == self.tuning.workers {
            assert!(!wait, "the stream would wait forever for an executor");
            return None;
        }
        leased[pool] += 1;
        Some(FakeLease {
            world: Rc::clone(&self.world),
            kind: self.kind,
            per_row: self.tuning.per_row,
            id: leased[pool] - 1,
            pool,
            ring: VecDeque::new(),
            dead: false,
        })
    }
    fn is_active(&self, lease: &FakeLease) -> bool {
        lease.pool == self.world.active.get()
    }
    fn fall_back(&self, _module: &str) -> Result<(), RunError> {
        self.world.fallbacks.set(self.world.fallbacks.get() + 1);
        self.world.active.set(1);
        Ok(())
    }
}

impl Leased for FakeLease {
    fn id(&self) -> usize {
        self.id
    }
    fn send_batch(
        &mut self,
        payload: &[u8],
        _columnar: bool,
        _alone: bool,
        _wait: Duration,
    ) -> Result<bool, RunError> {
        assert!(!self.dead, "a batch sent to a dead executor");
        let seq = Batch::seq(payload).unwrap();
        let rows = coil_ipc::decode_batch(&Batch::rows(payload)).unwrap();
        self.ring.push_back((seq, rows));
        let deepest = self.world.deepest.get().max(self.ring.len());
        self.world.deepest.set(deepest);
        Ok(true)
    }
    fn answer(
        &mut self,
        seq: u64,
        rows: Range<u64>,
        _deadline: Option<Instant>,
        _timeout: Option<Duration>,
        _wait: bool,
    ) -> Reply {
        let (got, values) = self.ring.pop_front().expect("an answer owed");
        assert_eq!(got, seq, "executor {} answers in its own order", self.id);
        let attempt = {
            let mut runs = self.world.runs.borrow_mut();
            let n = runs.entry(seq).or_default();
            *n += 1;
            *n - 1
        };
        let error = || PyErrorInfo {
            type_name: "ImportError".into(),
            message: "module m does not support loading in subinterpreters".into(),
            traceback: String::new(),
        };
        let poisoned = values.iter().position(|r| r[0] == Value::Int(POISON));
        let mut act = (self.world.script)(self.pool, seq, attempt);
        let mut failed = Vec::new();
        match (act, poisoned) {
            (Act::PoisonRaises, Some(at)) if self.per_row => {
                failed.push((
                    rows.start + at as u64,
                    RunError::Udf {
                        row: rows.start + at as u64,
                        error: error(),
                    },
                ));
                act = Act::Answer;
            }
            (Act::PoisonRaises, Some(at)) => {
                return Reply::Error(RunError::Udf {
                    row: rows.start + at as u64,
                    error: error(),
                })
            }
            (Act::PoisonKills, Some(_)) => act = Act::Die,
            (Act::PoisonHangs, Some(at)) => {
                self.ring.clear();
                self.dead = true;
                return Reply::Broken(RunError::Timeout {
                    row: Some(rows.start + at as u64),
                    after: Duration::from_secs(1),
                    rows,
                });
            }
            (Act::PoisonRaises | Act::PoisonKills | Act::PoisonHangs, _) => act = Act::Answer,
            _ => {}
        }
        match act {
            Act::PoisonRaises | Act::PoisonKills | Act::PoisonHangs => {
                unreachable!("resolved above")
            }
            Act::Answer => {
                self.world
                    .computed
                    .borrow_mut()
                    .entry(seq)
                    .or_default()
                    .push(self.pool);
                let out = values
                    .iter()
                    .enumerate()
                    .map(|(i, r)| match r[0] {
                        _ if failed.iter().any(|(f, _)| *f == rows.start + i as u64) => Value::Null,
                        Value::Int(x) => Value::Int(x + 1),
                        _ => Value::Null,
                    })
                    .collect();
                Reply::Values(Results::Rows(out), Times::default(), Duration::ZERO, failed)
            }
            Act::Raise => Reply::Error(RunError::Udf {
                row: rows.start,
                error: error(),
            }),
            Act::Incompatible => Reply::Error(RunError::SubInterpreterIncompatible {
                row: rows.start,
                module: "m".into(),
                error: error(),
            }),
            act @ (Act::Die | Act::DieUnstarted) => {
                self.ring.clear();
                self.dead = true;
                Reply::Broken(RunError::WorkerDied {
                    worker: self.id,
                    exit: WorkerExit::Signal {
                        number: 9,
                        name: "SIGKILL",
                    },
                    row: (act == Act::Die).then(|| match (poisoned, self.kind) {
                        (Some(at), UdfKind::Scalar) => rows.start + at as u64,
                        _ => rows.start,
                    }),
                    rows,
                    stderr: String::new(),
                })
            }
        }
    }
    fn replace(&mut self, _why: &RunError) {
        self.world.replaced.set(self.world.replaced.get() + 1);
        self.ring.clear();
        self.dead = false;
    }
    fn discard(&mut self, _why: &RunError) {
        self.world.discarded.set(self.world.discarded.get() + 1);
        self.ring.clear();
    }
}

fn fake(pairs: &[&str], script: impl Fn(usize, u64, u32) -> Act + 'static) -> Fake {
    let mut c = Config::default();
    for p in pairs {
        c.set_pair(p).unwrap();
    }
    Fake {
        world: Rc::new(World {
            script: Box::new(script),
            active: Cell::new(0),
            fallbacks: Cell::new(0),
            leased: RefCell::new([0, 0]),
            computed: RefCell::new(HashMap::new()),
            runs: RefCell::new(HashMap::new()),
            replaced: Cell::new(0),
            discarded: Cell::new(0),
            deepest: Cell::new(0),
        }),
        tuning: Tuning::of(&c),
        counters: Counters::default(),
        kind: UdfKind::Scalar,
    }
}

const ROWS: i64 = 100;

/// Pushes 0..ROWS through a scheduler, then pulls every result or
/// error, in order.
fn drive(f: Fake) -> (Vec<Result<Value, RunError>>, Rc<World>) {
    let world = Rc::clone(&f.world);
    let mut s = Scheduler::new(f);
    let mut out = Vec::new();
    // Push everything first: the scheduler keeps up to two batches in
    // flight on each executor and takes answers only when it must.
    for x in 0..ROWS {
        s.push(vec![Value::Int(x)]);
    }
    while let Some(v) = s.pull() {
        out.push(v);
    }
    (out, world)
}

fn values(out: &[Result<Value, RunError>]) -> Vec<i64> {
    out.iter()
        .filter_map(|r| match r {
            Ok(Value::Int(x)) => Some(*x),
            _ => None,
        })
        .collect()
}

const TWO: &[&str] = &["python.worker-count=2", "python.fn-execution.bundle.size=3"];

#[test]
fn results_come_back_in_order_across_executors_two_batches_deep_at_most() {
    let (out, world) = drive(fake(TWO, |_, _, _| Act::Answer));
    assert_eq!(values(&out), (1..=ROWS).collect::<Vec<_>>());
    assert_eq!(out.len(), ROWS as usize);
    assert_eq!(*world.leased.borrow(), [2, 0], "both executors used");
    assert!(world.deepest.get() <= DEPTH, "{}", world.deepest.get());
}

#[test]
fn a_udf_error_takes_the_place_of_its_batch_only() {
    let (out, _) = drive(fake(
        TWO,
        |_, seq, _| if seq == 5 { Act::Raise } else { Act::Answer },
    ));
    // Batch 5 holds rows 15..18: one error in their place.
    assert_eq!(out.len(), ROWS as usize - 3 + 1);
    assert!(
        matches!(out[15], Err(RunError::Udf { row: 15, .. })),
        "{:?}",
        out[15]
    );
    let want: Vec<i64> = (0..ROWS)
        .filter(|x| !(15..18).contains(x))
        .map(|x| x + 1)
        .collect();
    assert_eq!(values(&out), want);
}

#[test]
fn a_dead_executor_fails_its_batch_and_what_it_held_runs_on_the_replacement() {
    let (out, world) = drive(fake(TWO, |_, seq, attempt| {
        if seq == 6 && attempt == 0 {
            Act::Die
        } else {
            Act::Answer
        }
    }));
    assert!(
        matches!(out[18], Err(RunError::WorkerDied { .. })),
        "{:?}",
        out[18]
    );
    let want: Vec<i64> = (0..ROWS)
        .filter(|x| !(18..21).contains(x))
        .map(|x| x + 1)
        .collect();
    assert_eq!(values(&out), want, "every other row, once, in order");
    assert_eq!(world.replaced.get(), 1);
    // Nothing answered twice.
    assert!(world.computed.borrow().values().all(|p| p.len() == 1));
}

#[test]
fn with_one_retry_a_dead_executors_batch_runs_again() {
    let mut pairs = TWO.to_vec();
    pairs.push("python.fn-execution.retries=1");
    let (out, world) = drive(fake(&pairs, |_, seq, attempt| {
        if seq == 6 && attempt == 0 {
            Act::Die
        } else {
            Act::Answer
        }
    }));
    assert_eq!(values(&out), (1..=ROWS).collect::<Vec<_>>());
    assert_eq!(out.len(), ROWS as usize);
    assert_eq!(world.replaced.get(), 1);
    assert!(world.computed.borrow().values().all(|p| p.len() == 1));
}

#[test]
fn a_fall_back_keeps_every_answer_and_reruns_only_what_produced_nothing() {
    // In pool 0 (sub-interpreters) batches from 8 on fail every other
    // time; pool 1 (processes) answers everything.
    let (out, world) = drive(fake(TWO, |pool, seq, _| {
        if pool == 0 && seq >= 8 && seq % 2 == 1 {
            Act::Incompatible
        } else {
            Act::Answer
        }
    }));
    assert_eq!(values(&out), (1..=ROWS).collect::<Vec<_>>());
    assert_eq!(out.len(), ROWS as usize);
    assert_eq!(world.fallbacks.get(), 1);
    let computed = world.computed.borrow();
    // Every batch produced results exactly once...
    assert_eq!(computed.len() as i64, (ROWS + 2) / 3);
    assert!(computed.values().all(|p| p.len() == 1), "{computed:?}");
    // ... the failed one in process mode, and everything after the
    // fall-back too; batches answered in sub-interpreters stayed there.
    assert_eq!(computed[&9], vec![1]);
    assert_eq!(computed[&0], vec![0]);
    // Batch 10 was in flight on the other executor when 9 failed: its
    // answer from the sub-interpreter was kept (read out of order and
    // delivered in its turn), not run again.
    assert_eq!(computed[&10], vec![0]);
    // Only batches already in flight when 9 failed (at most two per
    // executor: 9..=12) ran in sub-interpreters after it.
    let in_flight = 9 + 2 * DEPTH as u64 - 1;
    assert!(computed
        .iter()
        .all(|(seq, p)| *seq <= in_flight || p == &vec![1]));
}

#[test]
fn in_strict_mode_an_incompatibility_is_the_batchs_error() {
    let mut pairs = TWO.to_vec();
    pairs.push("python.execution-mode.strict=true");
    let (out, world) = drive(fake(&pairs, |_, seq, _| {
        if seq == 4 {
            Act::Incompatible
        } else {
            Act::Answer
        }
    }));
    assert!(matches!(
        out[12],
        Err(RunError::SubInterpreterIncompatible { row: 12, .. })
    ));
    assert_eq!(world.fallbacks.get(), 0);
    assert_eq!(out.len(), ROWS as usize - 3 + 1);
}

#[test]
fn a_death_before_the_batch_started_does_not_spend_its_retries() {
    // No retries configured: a worker that died before it ran batch 6
    // does not cost batch 6 its answer.
    let (out, world) = drive(fake(TWO, |_, seq, attempt| {
        if seq == 6 && attempt == 0 {
            Act::DieUnstarted
        } else {
            Act::Answer
        }
    }));
    assert_eq!(values(&out), (1..=ROWS).collect::<Vec<_>>());
    assert_eq!(world.replaced.get(), 1);
    // ... but a worker that always dies at once ends in an error, after
    // a bounded number of free resends.
    let (out, world) = drive(fake(TWO, |_, seq, _| {
        if seq == 6 {
            Act::DieUnstarted
        } else {
            Act::Answer
        }
    }));
    assert!(
        matches!(out[18], Err(RunError::WorkerDied { row: None, .. })),
        "{:?}",
        out[18]
    );
    assert_eq!(world.runs.borrow()[&6], FREE_RESENDS + 1);
    assert_eq!(out.len(), ROWS as usize - 3 + 1);
}

const PER_ROW: &[&str] = &[
    "python.worker-count=2",
    "python.fn-execution.bundle.size=10",
    "python.fn-execution.on-error=skip",
];

/// Checks that every row but [`POISON`]'s was answered once, in order,
/// and that the poisoned row's own error, with its input, holds its
/// place; returns that error.
fn only_the_poisoned_row_failed(out: &[Result<Value, RunError>]) -> &RunError {
    assert_eq!(out.len(), ROWS as usize, "one item per row");
    for (x, r) in out.iter().enumerate() {
        if x as i64 != POISON {
            assert!(
                matches!(r, Ok(Value::Int(v)) if *v == x as i64 + 1),
                "row {x}: {r:?}"
            );
        }
    }
    match &out[POISON as usize] {
        Err(RunError::Row(e)) => {
            assert_eq!(e.row, POISON as u64);
            assert_eq!(e.args, vec![Value::Int(POISON)]);
            &e.error
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn per_row_a_udf_error_fails_its_row_alone() {
    let (out, world) = drive(fake(PER_ROW, |_, _, _| Act::PoisonRaises));
    let e = only_the_poisoned_row_failed(&out);
    assert!(matches!(e, RunError::Udf { row: 13, .. }), "{e:?}");
    assert_eq!(world.replaced.get(), 0);
    // Under `fail`, the same error is its batch's (rows 10..20).
    let mut pairs = PER_ROW.to_vec();
    pairs.pop();
    let (out, _) = drive(fake(&pairs, |_, _, _| Act::PoisonRaises));
    assert_eq!(out.len(), ROWS as usize - 10 + 1);
    assert!(matches!(out[10], Err(RunError::Udf { row: 13, .. })));
}

#[test]
fn per_row_a_death_fails_only_the_row_running_and_the_rest_run_again() {
    let (out, world) = drive(fake(PER_ROW, |_, _, _| Act::PoisonKills));
    let e = only_the_poisoned_row_failed(&out);
    assert!(
        matches!(e, RunError::WorkerDied { row: Some(13), .. }),
        "{e:?}"
    );
    assert_eq!(world.replaced.get(), 1, "the poisoned row ran once");
    // With a retry, the row runs twice (and kills twice) first.
    let mut pairs = PER_ROW.to_vec();
    pairs.push("python.fn-execution.retries=1");
    let (out, world) = drive(fake(&pairs, |_, _, _| Act::PoisonKills));
    only_the_poisoned_row_failed(&out);
    assert_eq!(world.replaced.get(), 2);
}

#[test]
fn per_row_a_timeout_fails_only_the_row_running() {
    let (out, world) = drive(fake(PER_ROW, |_, _, _| Act::PoisonHangs));
    let e = only_the_poisoned_row_failed(&out);
    assert!(
        matches!(e, RunError::Timeout { row: Some(13), .. }),
        "{e:?}"
    );
    assert_eq!(world.replaced.get(), 1);
}

#[test]
fn per_row_a_vectorized_batch_that_breaks_its_executor_runs_row_by_row() {
    let mut f = fake(PER_ROW, |_, _, _| Act::PoisonKills);
    f.kind = UdfKind::Vectorized;
    let (out, world) = drive(f);
    let e = only_the_poisoned_row_failed(&out);
    assert!(matches!(e, RunError::WorkerDied { .. }), "{e:?}");
    // Once with its batch, once alone.
    assert_eq!(world.replaced.get(), 2);
}
