//! The row codec against bincode 2.0.1 on the row hot path: a batch of 1,000
//! rows of (i64, f64, 32-character string). See `benches/README.md`.
//!
//! - `codec/flat/{encode,decode,roundtrip}`: coil's flat layout, to and from
//!   a `Vec<u8>`.
//! - `codec/flat/{decode,roundtrip}-reuse`: decoding into the rows of the
//!   previous batch ([`decode_batch_into`]), as a runner with a scratch
//!   batch does: no allocation once warm.
//! - `codec/flat-frame/{encode,decode,decode-reuse}`: the same, written straight into a
//!   reserved ring frame and decoded in place from a committed one.
//! - `codec/bincode/{encode,decode,roundtrip}`: bincode 2.0.1 (standard
//!   config) on a bench-local mirror of the row model.

use std::hint::black_box;
use std::time::Duration;

use coil_ipc::{decode_batch, decode_batch_into, encode_batch, encoded_len, Region, Row, Value};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const ROWS: usize = 1000;

/// bincode's view of a value: a wire type local to this bench, so the
/// product's `Value` derives nothing serializable.
#[derive(bincode::Encode, bincode::Decode, PartialEq, Debug)]
enum WireValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<WireValue>),
}

fn to_wire(v: &Value) -> WireValue {
    match v {
        Value::Null => WireValue::Null,
        Value::Bool(b) => WireValue::Bool(*b),
        Value::Int(i) => WireValue::Int(*i),
        Value::Float(f) => WireValue::Float(*f),
        Value::Str(s) => WireValue::Str(s.clone()),
        Value::Bytes(b) => WireValue::Bytes(b.clone()),
        Value::List(l) => WireValue::List(l.iter().map(to_wire).collect()),
    }
}

fn rows() -> Vec<Row> {
    (0..ROWS as i64)
        .map(|i| {
            let s: String = (0..32)
                .map(|k| (b'a' + ((i as usize + k) % 26) as u8) as char)
                .collect();
            vec![
                Value::Int(i * 7919 - 500_000),
                Value::Float(i as f64 * 0.25),
                Value::Str(s),
            ]
        })
        .collect()
}

fn codec(c: &mut Criterion) {
    let rows = rows();
    let wire: Vec<Vec<WireValue>> = rows
        .iter()
        .map(|r| r.iter().map(to_wire).collect())
        .collect();
    let cfg = bincode::config::standard();

    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    // Quick checks before timing.
    let mut flat = Vec::new();
    encode_batch(&rows, &mut flat).unwrap();
    assert_eq!(flat.len(), encoded_len(&rows));
    assert_eq!(decode_batch(&flat[..]).unwrap(), rows);
    let bin = bincode::encode_to_vec(&wire, cfg).unwrap();
    let (back, _): (Vec<Vec<WireValue>>, usize) = bincode::decode_from_slice(&bin, cfg).unwrap();
    assert_eq!(back, wire);

    let mut buf = Vec::with_capacity(flat.len());
    g.bench_function("flat/encode", |b| {
        b.iter(|| {
            buf.clear();
            encode_batch(black_box(&rows), &mut buf).unwrap()
        })
    });
    g.bench_function("flat/decode", |b| {
        b.iter(|| decode_batch(black_box(&flat[..])).unwrap())
    });
    g.bench_function("flat/roundtrip", |b| {
        b.iter(|| {
            buf.clear();
            encode_batch(black_box(&rows), &mut buf).unwrap();
            decode_batch(&buf[..]).unwrap()
        })
    });

    let mut scratch = Vec::new();
    decode_batch_into(&flat[..], &mut scratch).unwrap();
    assert_eq!(scratch, rows);
    g.bench_function("flat/decode-reuse", |b| {
        b.iter(|| decode_batch_into(black_box(&flat[..]), &mut scratch).unwrap())
    });
    g.bench_function("flat/roundtrip-reuse", |b| {
        b.iter(|| {
            buf.clear();
            encode_batch(black_box(&rows), &mut buf).unwrap();
            decode_batch_into(&buf[..], &mut scratch).unwrap()
        })
    });

    let region = Region::create_private(&[1 << 20]).unwrap();
    let (mut tx, mut rx) = (region.producer(0).unwrap(), region.consumer(0).unwrap());
    let len = encoded_len(&rows);
    {
        let mut w = tx.try_reserve(len).unwrap();
        encode_batch(&rows, &mut w).unwrap();
        w.commit(0);
        tx.flush();
        let f = rx.try_recv().unwrap().unwrap();
        assert_eq!(decode_batch(&f).unwrap(), rows);
    }
    g.bench_function("flat-frame/encode", |b| {
        b.iter(|| {
            let mut w = tx.try_reserve(len).unwrap();
            encode_batch(black_box(&rows), &mut w).unwrap();
            // Abandoned, not committed: the ring stays empty.
        })
    });
    {
        let mut w = tx.try_reserve(len).unwrap();
        encode_batch(&rows, &mut w).unwrap();
        w.commit(0);
        tx.flush();
    }
    let frame = rx.try_recv().unwrap().unwrap();
    g.bench_function("flat-frame/decode", |b| {
        b.iter(|| decode_batch(black_box(&frame)).unwrap())
    });
    g.bench_function("flat-frame/decode-reuse", |b| {
        b.iter(|| decode_batch_into(black_box(&frame), &mut scratch).unwrap())
    });
    drop(frame);

    let mut bbuf = Vec::with_capacity(bin.len());
    g.bench_function("bincode/encode", |b| {
        b.iter(|| {
            bbuf.clear();
            bincode::encode_into_std_write(black_box(&wire), &mut bbuf, cfg).unwrap()
        })
    });
    g.bench_function("bincode/decode", |b| {
        b.iter(|| {
            let (v, _): (Vec<Vec<WireValue>>, usize) =
                bincode::decode_from_slice(black_box(&bin), cfg).unwrap();
            v
        })
    });
    g.bench_function("bincode/roundtrip", |b| {
        b.iter(|| {
            bbuf.clear();
            bincode::encode_into_std_write(black_box(&wire), &mut bbuf, cfg).unwrap();
            let (v, _): (Vec<Vec<WireValue>>, usize) =
                bincode::decode_from_slice(&bbuf, cfg).unwrap();
            v
        })
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
