"""Plain-Python reference: calls FILE:NAME on the rows read from stdin (a
JSON list of argument lists) and prints the results as JSON, the way the
tests expect coil's results. Bytes travel as {"$bytes": hex}."""
import importlib.util
import json
import sys


def decode(v):
    if isinstance(v, dict):
        return bytes.fromhex(v["$bytes"])
    if isinstance(v, list):
        return [decode(x) for x in v]
    return v


def encode(v):
    if isinstance(v, (bytes, bytearray)):
        return {"$bytes": bytes(v).hex()}
    if isinstance(v, (list, tuple)):
        return [encode(x) for x in v]
    return v


path, name, kind = sys.argv[1:4]
spec = importlib.util.spec_from_file_location("udf_under_test", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
obj = getattr(module, name)
if isinstance(obj, type):
    inst = obj()
    if hasattr(inst, "open"):
        inst.open()
    fn = inst.eval
else:
    fn = obj
rows = [decode(r) for r in json.load(sys.stdin)]
if kind == "scalar":
    out = [fn(*r) for r in rows]
elif kind == "table":
    out = [[list(x) if isinstance(x, (tuple, list)) else [x] for x in fn(*r)] for r in rows]
else:
    cols = [list(c) for c in zip(*rows)]
    out = list(fn(*cols))
json.dump([encode(v) for v in out], sys.stdout)
