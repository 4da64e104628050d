import json, re
from dataclasses import replace
import numpy as np
from autotag.taxonomy.decisions import default_params, evidence_for, shown_labels
from autotag.taxonomy.consumer import default_consumer
from bench_consumer import animal_words
d = json.load(open("/tmp/margin/extra.json")); probs = np.load("/tmp/margin/extra_probs.npy")
V = default_consumer(); P = default_params(); animals = animal_words()
S = [(0.2, 2), (0.2, 3), (0.3, 3), (0.4, 3), (0.2, 5), (0.3, 5), (0.5, 5)]
evs = [evidence_for(p, P, (), V, None, pl) for p, pl in zip(probs, d["plain"])]
base = [shown_labels(ev.label_scores, V, P) for ev in evs]
print("pictures", len(evs), "distinct", len({tuple(np.round(p, 4)) for p in probs}))
for A, R in S:
    q = replace(P, leader_min=A, leader_ratio=R)
    seen = {}
    for e, ev, b, p in zip(d["entries"], evs, base, probs):
        for j in np.flatnonzero(shown_labels(ev.label_scores, V, q) & ~b):
            seen[(V.labels[j], round(float(ev.label_scores[j]), 4))] = e["path"].split("/")[-1]
    print(A, R, "new labels (distinct pictures)", len(seen), "animal words", sum(1 for (l, _) in seen if l in animals))
