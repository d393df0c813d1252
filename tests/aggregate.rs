//! Aggregates through the runner API (issue 22): accumulator classes with
//! PyFlink's methods ([`Accumulators`]) and vectorized aggregates
//! ([`GroupedValues`]), in every mode, against the answers plain Rust
//! computes from the same rows; partial states merged; failures per group;
//! a worker killed mid-aggregate.

use std::collections::BTreeMap;
use std::sync::Arc;

use coil_host::arrow_array::cast::AsArray;
use coil_host::arrow_array::types::{Float64Type, Int64Type};
use coil_host::arrow_array::{Array, ArrayRef, Int64Array, StringArray};
use coil_host::arrow_schema::DataType;
use coil_host::{Accumulators, GroupedValues, Runner, UdfKind, UdfSpec};

use crate::util::{config, modes, numpy, udfs, with_numpy, worker};

fn runner(file: &str, name: &str, kind: UdfKind, returns: DataType, pairs: &[&str]) -> Runner {
    let spec = UdfSpec::new(format!("{}:{name}", udfs().join(file).display()))
        .kind(kind)
        .returns(returns);
    Runner::with_worker_command(&config(pairs), spec, worker()).unwrap_or_else(|e| panic!("{e}"))
}

/// `n` rows: a value (NULL every 11th, never 13), and a group among
/// `groups`.
fn rows(n: i64, groups: usize) -> (Vec<Option<i64>>, Vec<usize>) {
    let values = (0..n)
        .map(|i| (i % 11 != 5).then_some((i * 7919) % 1000 - 300))
        .map(|v| v.map(|v| if v == 13 { 12 } else { v }))
        .collect();
    let group = (0..n).map(|i| ((i * 31) as usize) % groups).collect();
    (values, group)
}

fn sums(values: &[Option<i64>], group: &[usize], groups: usize) -> Vec<Option<i64>> {
    let mut out: Vec<Option<i64>> = vec![None; groups];
    for (v, g) in values.iter().zip(group) {
        if let Some(v) = v {
            out[*g] = Some(out[*g].unwrap_or(0) + v);
        }
    }
    out
}

fn array(values: &[Option<i64>]) -> ArrayRef {
    Arc::new(Int64Array::from(values.to_vec()))
}

#[test]
fn an_accumulator_class_sums_each_group_exactly_in_every_mode_and_its_states_merge() {
    let (values, group) = rows(5000, 37);
    let want = sums(&values, &group, 37);
    for mode in modes() {
        let conf = format!("python.execution-mode={mode}");
        let r = runner(
            "aggregates.py",
            "Sum",
            UdfKind::Aggregate,
            DataType::Int64,
            &["python.worker-count=2", conf.as_str()],
        );
        // In three batches, as an engine feeds them.
        let mut acc = Accumulators::new(&r, vec![DataType::Int64]).unwrap();
        for part in [0..1200, 1200..1201, 1201..5000] {
            let failed = acc
                .update(&r, &group[part.clone()], &[array(&values[part])])
                .unwrap();
            assert!(failed.is_empty());
        }
        assert_eq!(acc.len(), 37);
        let got = acc.evaluate(&r, None).unwrap();
        let got: Vec<Option<i64>> = got.as_primitive::<Int64Type>().iter().collect();
        assert_eq!(got, want, "{mode}");
        assert!(acc.is_empty(), "evaluate takes the groups out");

        // Two partial aggregates over halves, merged: the same answer.
        let mut a = Accumulators::new(&r, vec![DataType::Int64]).unwrap();
        let mut b = Accumulators::new(&r, vec![DataType::Int64]).unwrap();
        a.update(&r, &group[..2500], &[array(&values[..2500])])
            .unwrap();
        b.update(&r, &group[2500..], &[array(&values[2500..])])
            .unwrap();
        let partial = b.take_states(&r, None).unwrap();
        let groups: Vec<usize> = (0..partial.len()).collect();
        a.merge(&r, &groups, &partial).unwrap();
        let merged = a.evaluate(&r, None).unwrap();
        let merged: Vec<Option<i64>> = merged.as_primitive::<Int64Type>().iter().collect();
        assert_eq!(merged, want, "{mode}: merged partials");
    }
}

#[test]
fn accumulators_take_two_arguments_keep_row_order_retract_and_emit_the_first_groups() {
    let r = runner(
        "aggregates.py",
        "WeightedAvg",
        UdfKind::Aggregate,
        DataType::Float64,
        &["python.worker-count=1"],
    );
    let mut acc = Accumulators::new(&r, vec![DataType::Int64, DataType::Int64]).unwrap();
    let v = array(&[Some(1), Some(2), Some(3), None, Some(10)]);
    let w = array(&[Some(1), Some(1), Some(2), Some(5), Some(0)]);
    acc.update(&r, &[0, 0, 1, 1, 2], &[v, w]).unwrap();
    let got = acc.evaluate(&r, None).unwrap();
    let got: Vec<Option<f64>> = got.as_primitive::<Float64Type>().iter().collect();
    assert_eq!(got, vec![Some(1.5), Some(3.0), None]);

    let r = runner(
        "aggregates.py",
        "Concat",
        UdfKind::Aggregate,
        DataType::Utf8,
        &["python.worker-count=1"],
    );
    let mut acc = Accumulators::new(&r, vec![DataType::Utf8]).unwrap();
    let s: ArrayRef = Arc::new(StringArray::from(vec!["a", "x", "b", "y", "c"]));
    acc.update(&r, &[0, 1, 0, 1, 0], std::slice::from_ref(&s))
        .unwrap();
    acc.update(&r, &[2, 0], &[s.slice(0, 2)]).unwrap();
    // Only the first two groups; the third moves down to 0.
    let first = acc.evaluate(&r, Some(2)).unwrap();
    let first: Vec<Option<&str>> = first.as_string::<i32>().iter().collect();
    assert_eq!(first, vec![Some("a|b|c|x"), Some("x|y")]);
    let rest = acc.evaluate(&r, None).unwrap();
    assert_eq!(rest.as_string::<i32>().value(0), "a");

    let r = runner(
        "aggregates.py",
        "Sum",
        UdfKind::Aggregate,
        DataType::Int64,
        &["python.worker-count=1"],
    );
    let mut acc = Accumulators::new(&r, vec![DataType::Int64]).unwrap();
    acc.update(&r, &[0, 0, 0], &[array(&[Some(5), Some(6), Some(7)])])
        .unwrap();
    acc.retract(&r, &[0], &[array(&[Some(5)])]).unwrap();
    let got = acc.evaluate(&r, None).unwrap();
    assert_eq!(got.as_primitive::<Int64Type>().value(0), 13);
}

#[test]
fn a_failed_group_is_null_and_named_under_skip_and_the_error_under_fail() {
    let (values, group) = rows(3000, 20);
    let with_13: Vec<Option<i64>> = values
        .iter()
        .enumerate()
        .map(|(i, v)| if i == 1234 { Some(13) } else { *v })
        .collect();
    let bad_group = group[1234];
    let mut want = sums(&values, &group, 20);
    want[bad_group] = None;
    for mode in modes() {
        let conf = format!("python.execution-mode={mode}");
        let r = runner(
            "aggregates.py",
            "FailsOn13",
            UdfKind::Aggregate,
            DataType::Int64,
            &["python.fn-execution.on-error=skip", conf.as_str()],
        );
        let mut acc = Accumulators::new(&r, vec![DataType::Int64]).unwrap();
        let mut failed = Vec::new();
        for part in [0..1500, 1500..3000] {
            failed.extend(
                acc.update(&r, &group[part.clone()], &[array(&with_13[part])])
                    .unwrap(),
            );
            // Rows wait for more before they go (PENDING_ROWS): flushed
            // here, the failure is reported now.
            failed.extend(acc.flush(&r).unwrap());
        }
        assert_eq!(failed.len(), 1, "{mode}");
        assert_eq!(failed[0].group, bad_group);
        assert!(
            failed[0].error.to_string().contains("13 is unlucky"),
            "{}",
            failed[0].error
        );
        let got = acc.evaluate(&r, None).unwrap();
        let got: Vec<Option<i64>> = got.as_primitive::<Int64Type>().iter().collect();
        assert_eq!(
            got, want,
            "{mode}: the failed group is null, the rest exact"
        );
    }
    let r = runner(
        "aggregates.py",
        "FailsOn13",
        UdfKind::Aggregate,
        DataType::Int64,
        &[],
    );
    let mut acc = Accumulators::new(&r, vec![DataType::Int64]).unwrap();
    acc.update(&r, &group, &[array(&with_13)]).unwrap();
    let e = acc.flush(&r).unwrap_err();
    assert!(e.to_string().contains("13 is unlucky"), "{e}");
    assert!(
        e.to_string().contains(&format!("in group {bad_group}: ")),
        "{e}"
    );
}

#[test]
fn a_worker_killed_mid_aggregate_loses_and_doubles_nothing() {
    let marker = std::env::temp_dir().join(format!(
        "coil-aggregate-killed-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    ));
    let n = 20_000i64;
    let (values, group) = rows(n, 50);
    let values: Vec<Option<i64>> = values
        .iter()
        .enumerate()
        .map(|(i, v)| if i == 15_000 { Some(13) } else { *v })
        .collect();
    let want = sums(&values, &group, 50);
    let r = runner(
        "aggregates.py",
        "KilledOnce",
        UdfKind::Aggregate,
        DataType::Int64,
        &[
            "python.execution-mode=process",
            "python.worker-count=2",
            "python.fn-execution.retries=1",
        ],
    );
    let markers: ArrayRef = Arc::new(StringArray::from(vec![
        marker.display().to_string();
        n as usize
    ]));
    let mut acc = Accumulators::new(&r, vec![DataType::Int64, DataType::Utf8]).unwrap();
    for part in [0..8000usize, 8000..16_000, 16_000..20_000] {
        let len = part.len();
        acc.update(
            &r,
            &group[part.clone()],
            &[array(&values[part.clone()]), markers.slice(part.start, len)],
        )
        .unwrap();
        // Each part goes now: the states built from the parts before are
        // the host's when the worker dies.
        acc.flush(&r).unwrap();
    }
    assert!(marker.exists(), "the worker was killed");
    let got = acc.evaluate(&r, None).unwrap();
    let got: Vec<Option<i64>> = got.as_primitive::<Int64Type>().iter().collect();
    assert_eq!(got, want);
    assert!(r.metrics().worker_restarts >= 1);
    std::fs::remove_file(&marker).ok();
}

#[test]
fn a_vectorized_aggregate_runs_once_per_group_over_lists_in_every_mode() {
    let (values, group) = rows(4000, 300);
    let mut want: BTreeMap<usize, (i64, i64)> = BTreeMap::new();
    for (v, g) in values.iter().zip(&group) {
        if let Some(v) = v {
            let e = want.entry(*g).or_insert((*v, *v));
            e.0 = e.0.min(*v);
            e.1 = e.1.max(*v);
        }
    }
    let want: Vec<Option<i64>> = (0..300)
        .map(|g| want.get(&g).map(|(lo, hi)| hi - lo))
        .collect();
    for mode in modes() {
        let conf = format!("python.execution-mode={mode}");
        let r = runner(
            "aggregates.py",
            "spread",
            UdfKind::VectorizedAggregate,
            DataType::Int64,
            &["python.worker-count=2", conf.as_str()],
        );
        let mut g = GroupedValues::new(&r, vec![DataType::Int64]).unwrap();
        g.update(&group[..1000], &[array(&values[..1000])]).unwrap();
        // A partial aggregate's rows, merged in as lists.
        let mut other = GroupedValues::new(&r, vec![DataType::Int64]).unwrap();
        other
            .update(&group[1000..], &[array(&values[1000..])])
            .unwrap();
        let lists = other.take_lists(None).unwrap();
        let groups: Vec<usize> = (0..lists[0].len()).collect();
        g.merge(&groups, &lists).unwrap();
        let got = g.evaluate(&r, None).unwrap();
        let got: Vec<Option<i64>> = got.as_primitive::<Int64Type>().iter().collect();
        assert_eq!(got, want, "{mode}");
    }
}

#[test]
fn pandas_numpy_and_pyarrow_aggregates_get_each_groups_values_as_their_annotations_ask() {
    let np = numpy();
    let (values, group) = rows(3000, 40);
    let dense: Vec<Option<i64>> = values.iter().map(|v| Some(v.unwrap_or(1))).collect();
    let mut by_group: Vec<Vec<i64>> = vec![Vec::new(); 40];
    for (v, g) in dense.iter().zip(&group) {
        by_group[*g].push(v.unwrap());
    }
    for mode in ["process", "multi-thread"] {
        let conf = format!("python.execution-mode={mode}");
        let pairs = with_numpy(&["python.worker-count=2", conf.as_str()], &np);
        let run = |name: &str, returns: DataType| {
            let r = runner(
                "pandas_aggregates.py",
                name,
                UdfKind::VectorizedAggregate,
                returns,
                &pairs,
            );
            let mut g = GroupedValues::new(&r, vec![DataType::Int64]).unwrap();
            g.update(&group, &[array(&dense)]).unwrap();
            g.evaluate(&r, None).unwrap()
        };
        let got = run("mean_sq", DataType::Float64);
        for (i, vs) in by_group.iter().enumerate() {
            let mean = vs.iter().map(|v| (v * v) as f64).sum::<f64>() / vs.len() as f64;
            let g = got.as_primitive::<Float64Type>().value(i);
            assert!(
                (g - mean).abs() <= mean.abs() * 1e-12,
                "{mode} group {i}: {g} vs {mean}"
            );
        }
        let got = run("np_range", DataType::Int64);
        let want: Vec<i64> = by_group
            .iter()
            .map(|vs| vs.iter().max().unwrap() - vs.iter().min().unwrap())
            .collect();
        assert_eq!(
            got.as_primitive::<Int64Type>().values().to_vec(),
            want,
            "{mode}"
        );
        let got = run("pa_sum", DataType::Int64);
        let want: Vec<i64> = by_group.iter().map(|vs| vs.iter().sum()).collect();
        assert_eq!(
            got.as_primitive::<Int64Type>().values().to_vec(),
            want,
            "{mode}"
        );
        let got = run("first_index", DataType::Int64);
        assert!(got
            .as_primitive::<Int64Type>()
            .values()
            .iter()
            .all(|i| *i == 0));
    }
}

#[test]
fn a_state_that_cannot_travel_is_an_error_naming_pickle_not_a_wrong_answer() {
    let r = runner(
        "aggregates.py",
        "Unpicklable",
        UdfKind::Aggregate,
        DataType::Int64,
        &[],
    );
    let mut acc = Accumulators::new(&r, vec![DataType::Int64]).unwrap();
    let e = acc
        .update(&r, &[0, 1], &[array(&[Some(1), Some(2)])])
        .and_then(|_| acc.evaluate(&r, None))
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("in group 0") && text.contains("pickle"),
        "{text}"
    );
}

#[test]
fn a_pyflink_aggregate_function_with_open_function_context_runs_unchanged() {
    let r = runner(
        "aggregates.py",
        "PyFlinkStyle",
        UdfKind::Aggregate,
        DataType::Int64,
        &[],
    );
    let mut acc = Accumulators::new(&r, vec![DataType::Int64]).unwrap();
    acc.update(&r, &[0, 1, 0], &[array(&[Some(1), Some(2), Some(3)])])
        .unwrap();
    let got = acc.evaluate(&r, None).unwrap();
    assert_eq!(
        got.as_primitive::<Int64Type>().values().to_vec(),
        vec![4, 2]
    );
}

#[test]
fn a_runner_of_another_kind_is_refused_by_name() {
    let r = runner(
        "aggregates.py",
        "spread",
        UdfKind::VectorizedAggregate,
        DataType::Int64,
        &[],
    );
    let e = Accumulators::new(&r, vec![DataType::Int64]).unwrap_err();
    assert!(e.to_string().contains("not an aggregate"), "{e}");
    let r = runner(
        "aggregates.py",
        "NoMerge",
        UdfKind::Aggregate,
        DataType::Int64,
        &[],
    );
    let mut acc = Accumulators::new(&r, vec![DataType::Int64]).unwrap();
    let states: ArrayRef = Arc::new(coil_host::arrow_array::BinaryArray::from(vec![
        None as Option<&[u8]>,
    ]));
    let e = acc.merge(&r, &[0], &states).unwrap_err();
    assert!(e.to_string().contains("no merge(acc, accs) method"), "{e}");
}
