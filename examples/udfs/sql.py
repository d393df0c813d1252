"""Example UDFs for `coil sql`: their annotations give SQL their types, so
`--udf slug=examples/udfs/sql.py:slug` needs no types on the command line."""
import re
import unicodedata


def slug(title: str) -> str:
    """A URL slug for a product title."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return "-".join(re.findall(r"[a-z0-9]+", ascii_title.lower()))


def stars(n: int) -> str:
    """A star bar."""
    return "★" * n


def py_inc(x: int) -> int:
    """x + 1, one row at a time."""
    return x + 1
