#!/usr/bin/env bash
# Runs examples/udfs/enrich.py, an async UDF that calls a web service with
# aiohttp, over 1,000 rows against the test server (tests/udfs/http_server.py:
# 20 ms a response, a 429 or a 503 now and then), on 127.0.0.1:
#
#   COIL="cargo run -q --release --bin coil --" bash examples/async_demo.sh
#
# The server stops when this script ends (its stdin is this script's fd 3).
set -euo pipefail
cd "$(dirname "$0")/.."
coil=${COIL:-target/release/coil}
port_file=$(mktemp)
trap 'rm -f "$port_file"' EXIT
exec 3> >(exec tools/python tests/udfs/http_server.py --latency-ms 20 > "$port_file")
for _ in $(seq 100); do
    [ -s "$port_file" ] && break
    sleep 0.1
done
base="http://127.0.0.1:$(head -1 "$port_file")"
seq 0 999 | awk -v base="$base" '{ printf "[\"%s\", %d]\n", base, $1 }' |
    $coil run --udf examples/udfs/enrich.py:Enrich --workers 2 \
        --conf python.requirements=examples/udfs/requirements-enrich.txt \
        --conf python.fn-execution.async.max-concurrency=64 \
        --conf python.fn-execution.timeout=5s \
        --conf python.fn-execution.retry.max-attempts=4 \
        --conf python.fn-execution.retry.on=aiohttp.ClientResponseError \
        --conf python.fn-execution.retry.initial-delay=50ms \
        --conf python.fn-execution.rate-limit=2000 \
        --conf python.fn-execution.rate-limit.burst=50 |
    awk 'NR % 250 == 1 { print "row " NR - 1 ": " $0 } END { print NR " results" }'
