"""coil's runtime for UDFs: `import coil` in a UDF gives this module.

RetryAfter is the one public name: raise it from a UDF to be called again
after a given delay (a server's Retry-After), whatever
python.fn-execution.retry.on says, while attempts remain. The rest is
coil's own: how an executor calls a UDF (retries with back-off, the shared
rate limit) and the event loop an async UDF's rows run on."""
import asyncio
import builtins
import collections
import importlib
import inspect
import random
import sys
import time
import types

_coil_runtime = True

# A call cancelled for taking too long.
_TIMED_OUT = object()


class RetryAfter(Exception):
    """Raise from a UDF to have its row called again after SECONDS (e.g. a
    server's Retry-After header), whatever python.fn-execution.retry.on
    says, while python.fn-execution.retry.max-attempts allows. Raise it
    `from` the error that caused it: when the attempts are spent, that
    error is the row's."""

    def __init__(self, seconds, message=None):
        seconds = float(seconds)
        if not seconds >= 0:
            raise ValueError(f"RetryAfter needs a delay of 0 s or more, got {seconds}")
        super().__init__(message or f"asked to retry after {seconds:g} s")
        self.seconds = seconds


def is_async(fn):
    """Whether FN is called as a coroutine function: an async def, a bound
    async method, or a callable that sets coil_async = True. An async
    generator is refused: coil runs neither it nor its rows."""
    if inspect.isasyncgenfunction(fn):
        name = getattr(fn, "__qualname__", None) or repr(fn)
        raise TypeError(
            f"{name} is an async generator: coil runs async def functions that "
            f"return one value per row; write a table UDF as a plain generator")
    if inspect.iscoroutinefunction(fn):
        return True
    for obj in (fn, getattr(fn, "__self__", None), getattr(fn, "__func__", None)):
        if obj is not None and getattr(obj, "coil_async", False) is True:
            return True
    return inspect.iscoroutinefunction(getattr(fn, "__call__", None))


def _exception_class(name, fn):
    """The exception class NAME stands for: a dotted name is imported
    (httpx.ConnectError), a bare one is a builtin (ConnectionError) or a
    name in the UDF's own module (an exception it imports or defines)."""
    module_name, dot, attr = name.rpartition(".")
    found = None
    if dot:
        try:
            found = getattr(importlib.import_module(module_name), attr, None)
        except ImportError:
            found = None
    else:
        found = getattr(builtins, name, None)
        if found is None:
            module = sys.modules.get(getattr(fn, "__module__", None) or "")
            found = getattr(module, name, None)
    if isinstance(found, type) and issubclass(found, BaseException):
        return found
    raise ValueError(
        f"python.fn-execution.retry.on: {name!r} names no exception class (a "
        f"builtin such as ConnectionError, a dotted name such as "
        f"httpx.ConnectError, or a name the UDF's module defines or imports)")


class _Calls:
    """How an executor calls its UDF: the attempts, the exceptions retried,
    the back-off, the shared rate limit (RESERVE() -> seconds to wait, or
    None), and counts of attempts and retries."""

    def __init__(self, fn, attempts, retry_on, initial, max_delay, reserve):
        if initial > max_delay:
            raise ValueError(
                f"python.fn-execution.retry.initial-delay ({initial:g} s) is more "
                f"than python.fn-execution.retry.max-delay ({max_delay:g} s)")
        self.max_attempts = attempts
        self.retry_on = tuple(_exception_class(n, fn) for n in retry_on)
        self.initial = initial
        self.max_delay = max_delay
        self.reserve = reserve
        self.attempts = 0
        self.retries = 0

    def needed(self):
        """Whether calls need wrapping at all (retries or a rate limit)."""
        return self.max_attempts > 1 or self.reserve is not None

    def delay(self, exc, attempt):
        """Seconds to wait before attempt ATTEMPT + 1 after EXC, or None
        when EXC is the row's (not retried, or the attempts are spent)."""
        if attempt >= self.max_attempts:
            return None
        if isinstance(exc, RetryAfter):
            if exc.seconds > self.max_delay:
                exc.add_note(
                    f"coil: not retried: {exc.seconds:g} s is more than "
                    f"python.fn-execution.retry.max-delay ({self.max_delay:g} s)")
                return None
            return exc.seconds
        if self.retry_on and isinstance(exc, self.retry_on):
            base = min(self.initial * 2.0 ** (attempt - 1), self.max_delay)
            return min(self.max_delay, base * random.uniform(0.75, 1.25))
        return None

    def final(self, exc, attempt):
        """The row's error after ATTEMPT attempts ended with EXC: a
        RetryAfter's cause when it has one, with the attempt count."""
        if isinstance(exc, RetryAfter) and isinstance(exc.__cause__, Exception):
            exc = exc.__cause__
        if attempt > 1:
            try:
                exc._coil_attempts = attempt
            except AttributeError:
                pass
        return exc

    def wrap(self, fn):
        """FN called with retries and the rate limit (a sync UDF)."""
        reserve, sleep = self.reserve, time.sleep

        def call(*args):
            attempt = 1
            while True:
                if reserve is not None:
                    wait = reserve()
                    if wait > 0:
                        sleep(wait)
                self.attempts += 1
                try:
                    return fn(*args)
                except Exception as e:
                    d = self.delay(e, attempt)
                    if d is None:
                        raise self.final(e, attempt)
                sleep(d)
                attempt += 1
                self.retries += 1
        call.__wrapped__ = fn
        return call


def new_loop():
    """An event loop for this executor: the policy's (uvloop's, if the UDF's
    module installed it), set as this thread's."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    return loop


def run_awaitable(value, instance):
    """Runs VALUE to its end if it is awaitable (an async open() or close()),
    on INSTANCE's loop (made here the first time): an HTTP session open()
    makes is then the one its rows use."""
    if not inspect.isawaitable(value):
        return value
    loop = getattr(instance, "_coil_loop", None)
    if loop is None:
        loop = new_loop()
        try:
            instance._coil_loop = loop
        except AttributeError:
            pass
    return loop.run_until_complete(value)


class _Batch:
    """A batch's rows as they run: their arguments, each one's result, the
    exceptions of those that failed, and the next row to start."""

    __slots__ = ("args", "values", "errors", "remaining", "next", "waiting")

    def __init__(self, args):
        self.args = args
        self.values = [None] * len(args)
        self.errors = {}
        self.remaining = len(args)
        self.next = 0
        self.waiting = False


class _Raised:
    """A row whose first step raised ERROR."""

    __slots__ = ("error",)

    def __init__(self, error):
        self.error = error


class _Begun:
    """A coroutine already run to its first await (by the lanes' fast
    path, inside the lane's own task): awaiting this goes on with it where
    it stopped, as `await coro` would have, passing what it awaits up to
    the task and what the task sends or throws (a cancellation) down."""

    __slots__ = ("coro", "awaited")

    def __init__(self, coro, awaited):
        self.coro = coro
        self.awaited = awaited

    def __await__(self):
        coro, awaited = self.coro, self.awaited
        while True:
            try:
                yield awaited
            except BaseException as e:
                try:
                    awaited = coro.throw(e)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    awaited = coro.send(None)
                except StopIteration as done:
                    return done.value


class _Loop:
    """The event loop of one async UDF's executor.

    Batches wait in one queue, in order; up to CONCURRENCY lanes (tasks)
    take their rows one at a time and await each. A row that never awaits
    costs its lane one call, no task of its own; a row that awaits holds
    its lane until it is done, so at most CONCURRENCY rows are in flight.
    A call running longer than TIMEOUT seconds is cancelled (one timer
    watches every lane) and its row fails with TimeoutError; a row to be
    retried goes back to the front after its delay, holding no lane
    meanwhile."""

    def __init__(self, fn, calls, concurrency, timeout, instance, run_rows):
        self.fn = fn
        self.run_rows = run_rows
        self.name = getattr(fn, "__qualname__", None) or repr(fn)
        self.calls = calls
        self.timeout = timeout
        # How often the timer looks for calls past their timeout: a call is
        # cancelled between TIMEOUT and TIMEOUT + period after it began.
        self.period = None if timeout is None else min(max(timeout / 20, 0.001), 0.25)
        self.loop = getattr(instance, "_coil_loop", None) or new_loop()
        asyncio.set_event_loop(self.loop)
        self.concurrency = concurrency
        self.queue = collections.deque()
        # Rows to retry, oldest first: (batch, row, attempt).
        self.again = collections.deque()
        # Each lane's [calls begun and ended (odd: in a call), cancelled for
        # time]; what the timer saw of each: (that count, since when).
        self.lanes = {}
        self.seen = {}
        self.checker = None
        # Lanes with nothing to do wait on these; whether one was woken
        # (or started) and has not run yet.
        self.idle = collections.deque()
        self.waking = False

    def submit(self, rows):
        """Queues a batch's rows (a list of argument tuples); returns it.
        They start when the loop next runs."""
        batch = _Batch(rows)
        if rows:
            self.queue.append(batch)
            # Counted as they are handed over; retries add theirs.
            self.calls.attempts += len(rows)
            self._wake()
        return batch

    def _wake(self):
        """Gets one more lane going, unless one is already on its way: a
        lane that takes a row wakes the next before it awaits the row, so
        rows that wait ramp up to the concurrency, while rows that never
        await are all run by one lane (it never yields to the next)."""
        if self.waking:
            return
        if self.idle:
            self.idle.popleft().set_result(None)
        elif len(self.lanes) < self.concurrency:
            lane = self.loop.create_task(self._lane())
            self.lanes[lane] = [0, False]
            if self.period is not None and self.checker is None:
                self.checker = self.loop.call_later(self.period, self._check)
        else:
            return
        self.waking = True

    def run(self, batch, seconds):
        """Runs the loop until BATCH is done or SECONDS pass; whether it is
        done."""
        if batch.remaining == 0:
            return True
        batch.waiting = True
        stop = self.loop.call_later(seconds, self.loop.stop)
        try:
            self.loop.run_forever()
        finally:
            stop.cancel()
            batch.waiting = False
        return batch.remaining == 0

    def _check(self):
        self.checker = None
        now = self.loop.time()
        seen = {}
        for lane, state in self.lanes.items():
            calls, since = self.seen.get(lane, (None, now))
            if calls != state[0]:
                since = now
            elif state[0] & 1 and not state[1] and now - since >= self.timeout:
                state[1] = True
                lane.cancel()
            seen[lane] = (state[0], since)
        self.seen = seen
        if self.lanes:
            self.checker = self.loop.call_later(self.period, self._check)

    async def _lane(self):
        me = asyncio.current_task()
        state = self.lanes[me]
        queue, again, fn, calls = self.queue, self.again, self.fn, self.calls
        reserve = calls.reserve
        # Rows run one step each in Rust until one awaits (not under a rate
        # limit: each call must first wait for its turn).
        run_rows = self.run_rows if reserve is None else None
        timed, stop = self.timeout is not None, self.loop.stop
        coroutine, awaitable = types.CoroutineType, inspect.isawaitable
        try:
            # This lane was the one on its way.
            self.waking = False
            while True:
                begun = None
                if again:
                    batch, at, attempt = again.popleft()
                elif queue:
                    batch = queue[0]
                    at = batch.next
                    attempt = 1
                    n = len(batch.args)
                    if run_rows is not None:
                        end, kind, begun, awaited = run_rows(fn, batch.args, batch.values, at)
                        finished = end - at
                        at = end
                        batch.next = n if kind == 0 else end + 1
                        if batch.next >= n:
                            queue.popleft()
                        if finished:
                            batch.remaining -= finished
                            if batch.remaining == 0 and batch.waiting:
                                stop()
                        if kind == 0:
                            continue
                        if kind == 1:
                            begun = _Begun(begun, awaited)
                        elif kind == 2:
                            begun = _Raised(begun)
                    else:
                        batch.next = at + 1
                        if batch.next == n:
                            queue.popleft()
                else:
                    idle = self.loop.create_future()
                    self.idle.append(idle)
                    await idle
                    self.waking = False
                    continue
                if (queue or again) and not self.waking:
                    self._wake()
                try:
                    if begun is None:
                        if reserve is not None:
                            wait = reserve()
                            if wait > 0:
                                await asyncio.sleep(wait)
                        value = fn(*batch.args[at])
                    elif type(begun) is _Raised:
                        raise begun.error
                    else:
                        value = begun
                    if type(value) is not coroutine and not awaitable(value):
                        raise TypeError(
                            f"{self.name} is an async UDF but returned "
                            f"{type(value).__name__}, not an awaitable")
                    if timed:
                        state[0] += 1  # odd: in a call
                        try:
                            value = await value
                        except asyncio.CancelledError:
                            if not state[1]:
                                raise
                            value = _TIMED_OUT
                        finally:
                            state[0] += 1  # even: between calls
                            # Cancelled for time (or the UDF swallowed the
                            # cancellation): this lane goes on.
                            if state[1]:
                                me.uncancel()
                                state[1] = False
                        if value is _TIMED_OUT:
                            error = TimeoutError(
                                f"{self.name} took more than {self.timeout:g} s "
                                f"(python.fn-execution.timeout): cancelled")
                            error._coil_timed_out = True
                            raise error
                    else:
                        value = await value
                    batch.values[at] = value
                    batch.remaining -= 1
                    if batch.remaining == 0 and batch.waiting:
                        stop()
                except Exception as e:
                    self._failed(batch, at, attempt, e)
        finally:
            del self.lanes[me]

    def _failed(self, batch, at, attempt, exc):
        delay = self.calls.delay(exc, attempt)
        if delay is None:
            batch.errors[at] = self.calls.final(exc, attempt)
            batch.remaining -= 1
            if batch.remaining == 0 and batch.waiting:
                self.loop.stop()
            return
        self.calls.retries += 1
        self.calls.attempts += 1
        self.loop.call_later(delay, self._retry, (batch, at, attempt + 1))

    def _retry(self, row):
        self.again.append(row)
        self._wake()

    def close(self):
        """Cancels every row still in flight and lets the lanes end."""
        self.queue.clear()
        self.again.clear()
        self.idle.clear()
        lanes = list(self.lanes)
        for lane in lanes:
            lane.cancel()
        if lanes:
            self.loop.run_until_complete(asyncio.gather(*lanes, return_exceptions=True))


def calls(fn, attempts, retry_on, initial, max_delay, reserve):
    """The call policy of FN (raises ValueError naming the key for an
    unknown exception name)."""
    return _Calls(fn, attempts, retry_on, initial, max_delay, reserve)


def event_loop(fn, calls, concurrency, timeout, instance, run_rows=None):
    """The event loop an async UDF's rows run on; RUN_ROWS is the executor's
    fast path (see coil-worker's `row_runner`), None for none."""
    return _Loop(fn, calls, concurrency, timeout, instance, run_rows)
