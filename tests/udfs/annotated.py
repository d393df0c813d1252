"""UDFs whose return annotations name their Arrow result types."""
import datetime
import decimal
from collections.abc import Iterator
from typing import Optional


def inc(x) -> int:
    return x + 1


def maybe_half(x) -> Optional[float]:
    return None if x is None else x / 2


def pair(x) -> list[int]:
    return [x, x]


def named(x) -> dict[str, int]:
    return {"x": x}


def when(x) -> datetime.datetime:
    return datetime.datetime(2024, 1, 1) + datetime.timedelta(seconds=x)


def money(x) -> decimal.Decimal:
    return decimal.Decimal(x) / 4


def text(x) -> "str | None":
    return str(x)


def words(x) -> Iterator[tuple[int, str]]:
    for i in range(x):
        yield i, "w" * i


def unknown(x) -> object:
    return x


def none(x):
    return x
