"""UDFs that call the test server (http_server.py) as users call a web
service: aiohttp for the async one, with one session per executor opened
and closed with it; the standard library's http.client for the sync one."""
import http.client
import json
import os
import threading
import time
import urllib.parse

import aiohttp

import coil


def executor_id():
    return f"{os.getpid()}-{threading.get_ident()}"


class Double:
    """GET {base}/{kind}/{n}: 2*n. A 429 asks to be retried after its
    Retry-After; a 503 raises aiohttp.ClientResponseError (retried when
    python.fn-execution.retry.on names it)."""

    async def open(self):
        self.session = aiohttp.ClientSession(
            headers={"x-executor": executor_id()},
            timeout=aiohttp.ClientTimeout(total=30))

    async def eval(self, base: str, kind: str, n: int) -> int:
        async with self.session.get(f"{base}/{kind}/{n}") as r:
            if r.status == 429:
                raise coil.RetryAfter(float(r.headers["Retry-After"])) from \
                    aiohttp.ClientResponseError(r.request_info, r.history, status=429)
            r.raise_for_status()
            return (await r.json())["value"]

    async def close(self):
        await self.session.close()


class Stamped(Double):
    """Double's answer, with when the call started (time.monotonic, one
    clock for every process) and which executor made it:
    "value started executor"."""

    async def eval(self, base: str, kind: str, n: int) -> str:
        started = time.monotonic()
        value = await super().eval(base, kind, n)
        return f"{value} {started} {executor_id()}"


class DoubleSync:
    """The same call, synchronous: one row at a time per executor, over
    one kept-alive connection."""

    def open(self):
        self.conn = None

    def eval(self, base: str, kind: str, n: int) -> int:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(urllib.parse.urlsplit(base).netloc, timeout=30)
        self.conn.request("GET", f"/{kind}/{n}", headers={"x-executor": executor_id()})
        r = self.conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise ConnectionError(f"{r.status} from {base}/{kind}/{n}")
        return json.loads(body)["value"]

    def close(self):
        if self.conn is not None:
            self.conn.close()
