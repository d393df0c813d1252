"""Writes examples/data/titles.jsonl: deterministic product titles, one JSON
array of UDF arguments per line, for the README's demo; and the same rows as
examples/data/products.csv (id, title, stars) for its `coil sql` line. Run it again to
regenerate the file (same output every time)."""
import csv
import json
import pathlib
import random

rng = random.Random(7)
adjectives = ["Ünïque", "smart", "Eco", "ultra-light", "Vintage", "café", "PRO", "tiny", "Grüne"]
things = ["Kettle", "lamp", "Backpack", "chair", "Headphones", "notebook", "Teapot", "bike"]
out = pathlib.Path(__file__).with_name("titles.jsonl")
with out.open("w", encoding="utf-8") as f:
    for i in range(1000):
        title = f"  {rng.choice(adjectives)}  {rng.choice(things)} -- model {rng.randint(1, 99)}! "
        f.write(json.dumps([title, rng.randint(1, 5)], ensure_ascii=False) + "\n")

rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
with out.with_name("products.csv").open("w", encoding="utf-8", newline="") as f:
    w = csv.writer(f)
    w.writerow(["id", "title", "stars"])
    for i, (title, stars) in enumerate(rows):
        w.writerow([i, title, stars])
