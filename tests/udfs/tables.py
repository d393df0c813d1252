"""Table functions (generators) for the SQL tests."""
from typing import Iterator


def words(text: str, n: int) -> Iterator[tuple[str, int]]:
    """The first N words of TEXT, each with its length."""
    for i, w in enumerate(text.split()):
        if i < n:
            yield (w, len(w))
