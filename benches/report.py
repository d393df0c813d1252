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
