#!/usr/bin/env python3
"""Prints the medians of the last criterion run and the ratios the issues set
as bench targets, all from one run (target/criterion/*/new/estimates.json)."""
import json, pathlib, sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
med = {}
for est in root.glob("**/new/estimates.json"):
    bench = json.loads((est.parent / "benchmark.json").read_text())
    med[bench["full_id"]] = json.loads(est.read_text())["median"]["point_estimate"]

def fmt(ns):
    return f"{ns/1000:.2f} µs" if ns >= 1000 else f"{ns:.1f} ns"

for k in sorted(med):
    print(f"{k:45s} {fmt(med[k]):>12s}")

def ratio(label, num, den, target):
    if num in med and den in med:
        print(f"{label:60s} {med[den]/med[num]:8.2f}  (target {target})")

print()
for s in (64, 1024, 65536):
    ratio(f"xproc throughput / memcpy, {s} B", f"ring/throughput/xproc/{s}", f"ring/throughput/memcpy/{s}", ">= 0.5 at 65536")
    ratio(f"xproc throughput / memcpy over a ring-sized source, {s} B", f"ring/throughput/xproc/{s}", f"ring/throughput/memcpy-ring-sized/{s}", "-")
    ratio(f"xproc throughput / socket (one write per frame), {s} B", f"ring/throughput/xproc/{s}", f"ring/throughput/socket/{s}", ">= 10 at 64")
    ratio(f"xproc throughput / socket (buffered), {s} B", f"ring/throughput/xproc/{s}", f"ring/throughput/socket-buffered/{s}", "-")
    ratio(f"socket ping-pong RTT / xproc RTT, {s} B", f"ring/pingpong/xproc/{s}", f"ring/pingpong/socket/{s}", ">= 5")
for k in sorted(med):
    if k.startswith("codec/flat/roundtrip") or k.startswith("codec/bincode/roundtrip"):
        print(f"{k:60s} {med[k]/1000:8.1f} ns/row (target < 50 for flat)")

# process: the same rows per call everywhere but bundle size 1 (a fiftieth).
for udf in ("inc", "upper"):
    floor = med.get(f"process/direct/{udf}")
    for w in (1, 2):
        for b in (1, 100, 1000):
            k = f"process/w{w}/b{b}/{udf}"
            if floor and k in med:
                scale = 50 if b == 1 else 1
                print(f"{k + ' rows/s / direct floor':60s} {floor / (med[k] * scale):8.2f}  (target >= 0.7 at w1/b1000)")
# arrow: rows/s, and as a fraction of a memcpy of the same bytes.
mc = med.get("arrow/memcpy/int64")
for name, target in (("numpy-inc", ">= 100 M rows/s"), ("pandas-inc", ">= 43 M rows/s")):
    k = f"arrow/{name}/int64"
    if mc and k in med:
        print(f"{k + ' M rows/s':60s} {1048576 / med[k] * 1000:8.1f}  (target {target})")
        print(f"{k + ' / memcpy of the column':60s} {mc / med[k]:8.3f}")
for udf in ("inc", "upper"):
    a, r = med.get(f"arrow/scalar/{udf}"), med.get(f"arrow/rows/{udf}")
    if a and r:
        print(f"{'arrow/scalar/' + udf + ' rows/s / row API':60s} {r / a:8.2f}  (target >= 1)")
# async (issue 23): rows/s of I/O-bound rows, and what async costs.
a, s_ = med.get("async/http20ms/async"), med.get("async/http20ms/sync")
if a:
    rate = 10_000 / (a / 1e9)
    print(f"{'async/http20ms/async rows/s':60s} {rate:8.0f}  (target >= 2500)")
    print(f"{'async/http20ms/async / ideal (2 x 64 / 20 ms)':60s} {rate / 6400:8.2f}  (target >= 0.4)")
    if s_:
        print(f"{'async/http20ms async / sync, rows/s':60s} {rate / (200 / (s_ / 1e9)):8.1f}")
a, s_ = med.get("async/noawait/async"), med.get("async/noawait/sync")
if a and s_:
    print(f"{'async/noawait async time / sync time':60s} {a / s_:8.2f}  (target <= 3)")
for name in ("process-latency.json", "process-memory.json"):
    f = root / name
    if f.exists():
        print(f"{name:60s} {f.read_text().strip()}")
