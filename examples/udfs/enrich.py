"""An I/O-bound UDF: each row is a call to a web service.

Written with `async def`, one executor keeps many calls in flight
(python.fn-execution.async.max-concurrency) instead of waiting for each in
turn. One aiohttp session per executor, opened and closed with it. A 429
asks to be called again after the server's Retry-After (coil.RetryAfter);
a 503 raises aiohttp.ClientResponseError, which the configuration retries
with back-off (python.fn-execution.retry.on). examples/async_demo.sh runs
it against tests/udfs/http_server.py."""
import aiohttp

import coil


class Enrich:
    async def open(self):
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def eval(self, base: str, n: int) -> int:
        async with self.session.get(f"{base}/service/{n}") as r:
            if r.status == 429:
                raise coil.RetryAfter(float(r.headers["Retry-After"]))
            r.raise_for_status()
            return (await r.json())["value"]

    async def close(self):
        await self.session.close()
