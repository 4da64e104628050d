import json, re, sys
from dataclasses import replace
from pathlib import Path
import numpy as np
sys.path.insert(0, "scripts"); sys.path.insert(0, "bench")
from bench_consumer import view_probabilities, on_plain_background
from bench_objects import extra_set
from train_scenes import read_extra, EXTRA
from autotag.taxonomy.decisions import default_params, evidence_for, shown_labels
from autotag.taxonomy.consumer import default_consumer
out = Path("/tmp/margin/se"); out.mkdir(exist_ok=True)
entries = extra_set()
for e in entries:
    e["set"] = "objects"
for row in read_extra(EXTRA):
    name = re.sub(r"[^A-Za-z0-9._-]", "_", row["source"].split(":", 2)[-1].strip("/"))[-90:]
    f = out / name
    if not f.is_file():
        f.write_bytes(row["data"])
    entries.append({"id": "scx-" + Path(name).stem, "path": str(f), "set": "scenes", "kind": "photo",
                    "tags": row["tags"], "source": row["source"]})
print(len(entries), flush=True)
probs = view_probabilities(entries, "whole-if-plain")
plain = on_plain_background(entries)
np.save("/tmp/margin/extra_probs.npy", probs)
json.dump({"entries": [{k: v for k, v in e.items()} for e in entries], "plain": plain}, open("/tmp/margin/extra.json", "w"))
print("done")
