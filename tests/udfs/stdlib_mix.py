"""A UDF that touches every standard-library module UDFs commonly use, for
the sub-interpreter stress test (issue 10): the answers must equal plain
Python's, with two or more sub-interpreters using these modules at once."""
import array
import base64
import bisect
import collections
import csv
import datetime
import decimal
import fractions
import hashlib
import heapq
import io
import json
import math
import pickle
import random
import re
import sqlite3
import statistics
import struct
import threading
import unicodedata
import uuid
import xml.etree.ElementTree as ET
import zlib

# One connection per thread: in multi-thread mode every executor thread
# calls this module's functions, and a sqlite3 connection belongs to the
# thread that made it.
_local = threading.local()


def _db():
    db = getattr(_local, "db", None)
    if db is None:
        db = _local.db = sqlite3.connect(":memory:")
        db.execute("create table t (k integer primary key, v text)")
    return db


def mix(x):
    d = datetime.datetime(2020, 1, 1) + datetime.timedelta(seconds=x * 37)
    parts = [
        d.isoformat(),
        (d.date() - datetime.date(2019, 12, 31)).days,
        str(decimal.Decimal(x) / decimal.Decimal(7)),
        json.dumps({"x": x, "l": [x, x * 2]}, sort_keys=True),
        re.sub(r"[13579]", "#", str(x)),
        hashlib.sha256(str(x).encode()).hexdigest()[:16],
        unicodedata.name(chr(0x41 + x % 26)),
        zlib.crc32(str(x).encode()),
        struct.pack("<iq", x, x * 3).hex(),
        random.Random(x).random(),
        math.sqrt(x + 1),
        collections.Counter(str(x * 7919)).most_common(1)[0][0],
        array.array("i", [x, x + 1]).tobytes().hex(),
        pickle.loads(pickle.dumps((x, str(x), d))) == (x, str(x), d),
        base64.b64encode(str(x).encode()).decode(),
        bisect.bisect([0, 10, 100, 1000, 10000], x),
        heapq.nsmallest(2, [x % 13, x % 7, x % 5, 3]),
        str(statistics.mean([x, x + 1, x + 5])),
        str(fractions.Fraction(x, 7)),
        str(uuid.uuid5(uuid.NAMESPACE_DNS, str(x))),
        ET.tostring(ET.Element("r", a=str(x))).decode(),
    ]
    buf = io.StringIO()
    csv.writer(buf).writerow([x, "a,b", d.date()])
    parts.append(buf.getvalue())
    _db().execute("insert or replace into t values (?, ?)", (x, d.isoformat()))
    parts.append(_db().execute("select v from t where k = ?", (x,)).fetchone()[0])
    return "|".join(str(p) for p in parts)


def dt_only(x):
    d = datetime.datetime(2020, 1, 1) + datetime.timedelta(seconds=x)
    return d.isoformat()
