"""String cleanup: the kind of UDF that normalizes text columns."""
import re
import unicodedata

_SPACES = re.compile(r"\s+")


def clean(text):
    """NFKC-normalize, trim, collapse whitespace, casefold; None stays None."""
    if text is None:
        return None
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()
