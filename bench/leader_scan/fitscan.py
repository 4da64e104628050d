import json, sys
from dataclasses import replace
from pathlib import Path
import numpy as np
sys.path.insert(0, "scripts"); sys.path.insert(0, "bench")
import fit_consumer as fc
from bench_consumer import load_set, view_probabilities, detections, on_plain_background
from autotag.taxonomy.decisions import default_params
from autotag.taxonomy.consumer import default_consumer
entries = [e for e in load_set() if e["split"] == "fit"]
probs = view_probabilities(entries, "whole-if-plain")
dets = detections(entries)
oof = json.loads(Path(".cache/bench/scenes_oof.json").read_text())
scenes = [oof.get(e["id"], {}) for e in entries]
plain = on_plain_background(entries)
kinds = [e["kind"] for e in entries]
P = default_params()
evs = fc.evidences(probs, dets, P, scenes, kinds, plain)
vocab = default_consumer()
g = fc.Grid(entries, evs, vocab)
photos = np.array([e["kind"] == "photo" for e in entries]); every = np.ones(len(entries), bool)
base = g.names(P)
print("base", g.metrics(P, every), g.metrics(P, photos))
for A in [0.15, 0.2, 0.25, 0.3, 0.4, 0.5]:
    for R in [1.5, 2, 3, 4, 5, 8]:
        q = replace(P, leader_min=A, leader_ratio=R)
        ma, mp = g.metrics(q, every), g.metrics(q, photos)
        print(A, R, {k: round(v, 3) for k, v in ma.items()}, {k: round(v, 3) for k, v in mp.items()})
q = replace(P, leader_min=0.15, leader_ratio=1.5)
for e, b, n in zip(entries, base, g.names(q)):
    if b != n:
        new = [x for x in n if x not in b]
        print(e["id"], e["kind"], "NEW", new, "right" if set(new) & set(e["tags"]) else "", "WRONG" if set(new) & set(e["wrong"]) else "", "| tags", e["tags"][:6])
print("-----")
for A, R in [(0.2, 3), (0.2, 5), (0.3, 3)]:
    q = replace(P, leader_min=A, leader_ratio=R)
    print(A, R, [(e["id"], [x for x in n if x not in b]) for e, b, n in zip(entries, base, g.names(q)) if b != n])
for e, ev, p in zip(entries, evs, probs):
    if e["id"] in ("tux-football", "tux-uk-post-box", "tux-sportscar2"):
        o = np.argsort(-ev.label_scores)[:4]
        co = np.argsort(-ev.category_best)[:4]
        print(e["id"], [(vocab.labels[j], round(float(ev.label_scores[j]), 3)) for j in o],
              [(vocab.categories[j], round(float(ev.category_best[j]), 3), round(float(ev.category_scores[j]),3)) for j in co], ev.objects,
              [(vocab.imagenet[k].key, vocab.imagenet[k].label, round(float(p[k]), 3)) for k in np.argsort(-p)[:5]])
