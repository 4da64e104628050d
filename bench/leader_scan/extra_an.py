import json, sys
from dataclasses import replace
import numpy as np
from autotag.taxonomy.decisions import default_params, evidence_for, shown_labels
from autotag.taxonomy.consumer import default_consumer
d = json.load(open("/tmp/margin/extra.json")); probs = np.load("/tmp/margin/extra_probs.npy")
V = default_consumer(); P = default_params()
S = [(0.2, 2), (0.2, 3), (0.3, 3), (0.2, 5), (0.3, 5), (0.4, 3)]
rows = []
for e, p, pl in zip(d["entries"], probs, d["plain"]):
    ev = evidence_for(p, P, (), V, None, pl)
    base = shown_labels(ev.label_scores, V, P)
    o = np.argsort(-ev.label_scores)
    new = {}
    for A, R in S:
        n = shown_labels(ev.label_scores, V, replace(P, leader_min=A, leader_ratio=R)) & ~base
        for j in np.flatnonzero(n):
            new.setdefault(V.labels[j], []).append(f"{A}/{R}")
    if new:
        name = e["path"].split("/")[-1]
        print(e["set"][:3], name[-55:], e.get("objects") or e.get("tags"), "|", {k: v for k, v in new.items()},
              [(V.labels[j], round(float(ev.label_scores[j]), 2)) for j in o[:2]], "shown:", [V.labels[j] for j in np.flatnonzero(base)])
