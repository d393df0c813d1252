"""A small HTTP server for coil's async UDF tests and benchmarks, on
127.0.0.1, standard library only.

    python http_server.py [--latency-ms MS] [--unavailable-every K]

prints its port on the first line of stdout, then serves until stdin
closes (the test that started it ends). Paths:

    GET /double/N      2*N as {"value": ...}, after the latency
    GET /limited/N     429 with Retry-After: 0.2 the first time N is asked
                       for, then as /double
    GET /flaky/N       503 the first time N is asked for when N is a
                       multiple of K (--unavailable-every), then as /double
    GET /service/N     as a busy web service: the first time N is asked
                       for, 429 with Retry-After: 0.2 when N is a multiple
                       of 10, else 503 when N is a multiple of K; then as
                       /double
    GET /log           every request so far, as JSON: [path, seconds since
                       the server started, the X-Executor header, status]

Each request is logged when it arrives."""
import argparse
import asyncio
import json
import sys
import threading
import time

START = time.monotonic()
LOG = []
SEEN = {}


def route(path, args):
    kind, _, arg = path.strip("/").partition("/")
    if kind == "log":
        return 200, {}, LOG
    try:
        n = int(arg)
    except ValueError:
        return 404, {}, {"error": f"no such path {path}"}
    key = (kind, n)
    SEEN[key] = SEEN.get(key, 0) + 1
    first = SEEN[key] == 1
    if kind == "limited" and first:
        return 429, {"Retry-After": "0.2"}, {"error": "too many requests"}
    if kind == "service" and first and n % 10 == 0:
        return 429, {"Retry-After": "0.2"}, {"error": "too many requests"}
    if kind in ("flaky", "service") and first and n % args.unavailable_every == 0:
        return 503, {}, {"error": "unavailable"}
    if kind in ("double", "limited", "flaky", "service"):
        return 200, {}, {"value": 2 * n}
    return 404, {}, {"error": f"no such path {path}"}


async def handle(reader, writer, args):
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            method, path, _ = line.decode().split(" ", 2)
            headers = {}
            while True:
                h = await reader.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode().partition(":")
                headers[k.strip().lower()] = v.strip()
            arrived = time.monotonic() - START
            status, extra, body = route(path, args)
            if path != "/log":
                LOG.append([path, arrived, headers.get("x-executor", ""), status])
                if args.latency_ms:
                    await asyncio.sleep(args.latency_ms / 1000)
            data = json.dumps(body).encode()
            reason = {200: "OK", 404: "Not Found", 429: "Too Many Requests",
                      503: "Service Unavailable"}[status]
            head = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json",
                    f"Content-Length: {len(data)}"]
            head += [f"{k}: {v}" for k, v in extra.items()]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                break
    except (ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--latency-ms", type=float, default=0)
    p.add_argument("--unavailable-every", type=int, default=3)
    args = p.parse_args()
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, args), "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    closed = loop.create_future()
    # Ends when the test that started it closes our stdin (or dies).
    threading.Thread(target=lambda: (sys.stdin.read(),
                                     loop.call_soon_threadsafe(closed.set_result, None)),
                     daemon=True).start()
    async with server:
        await closed


if __name__ == "__main__":
    asyncio.run(main())
