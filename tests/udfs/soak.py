"""The soak tests' UDF: x + 1, with faults the test triggers from outside by
signal, in the middle of whatever row the worker runs next: SIGUSR1
segfaults the worker, SIGUSR2 makes the row spin past the timeout."""
import ctypes
import signal


def _segfault(signum, frame):
    ctypes.string_at(0)


def _hang(signum, frame):
    while True:
        pass


signal.signal(signal.SIGUSR1, _segfault)
signal.signal(signal.SIGUSR2, _hang)


def inc(x):
    return x + 1
