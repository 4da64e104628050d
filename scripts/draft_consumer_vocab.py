"""Draft the consumer vocabulary (src/autotag/taxonomy/consumer.toml) from WordNet 3.0.

This only DRAFTS: each ImageNet class gets its cleaned name as the label and categories read off its
WordNet ancestors; each breed of dog or cat gets "dog" / "cat" with the breed as its detail. A person
then reviews every line (plain words, sensible categories, never-lists) and the reviewed file is the
one the tagger reads. Never run this over the reviewed file: it writes to --out (default stdout).

Run: PYTHONPATH=src .venv/bin/python scripts/draft_consumer_vocab.py --out /tmp/consumer-draft.toml
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from autotag.taxonomy.imagenet import imagenet_hierarchy
from autotag.taxonomy.wordnet import synset_from_wnid

# WordNet synset -> categories it implies for every class beneath it (checked over the whole closure).
CATEGORY_RULES: dict[str, tuple[str, ...]] = {
    "dog.n.01": ("dog", "pet"),
    "domestic_cat.n.01": ("cat", "pet"),
    "bird.n.01": ("bird",),
    "insect.n.01": ("insect",),
    "fish.n.01": ("fish",),
    "reptile.n.01": ("reptile",),
    "animal.n.01": ("animal",),
    "flower.n.01": ("flower",),
    "edible_fruit.n.01": ("fruit",),
    "vegetable.n.01": ("vegetable",),
    "food.n.01": ("food",),
    "food.n.02": ("food",),
    "beverage.n.01": ("drink",),
    "car.n.01": ("car",),
    "boat.n.01": ("boat",),
    "ship.n.01": ("boat",),
    "vessel.n.02": ("boat",),
    "aircraft.n.01": ("aircraft",),
    "bicycle.n.01": ("bicycle",),
    "motorcycle.n.01": ("motorcycle",),
    "locomotive.n.01": ("train",),
    "train.n.01": ("train",),
    "wheeled_vehicle.n.01": ("vehicle",),
    "building.n.01": ("building",),
    "musical_instrument.n.01": ("music",),
    "furniture.n.01": ("furniture",),
    "clothing.n.01": ("clothing",),
    "footwear.n.02": ("clothing",),
    "electronic_equipment.n.01": ("electronics",),
    "computer.n.01": ("electronics",),
    "tool.n.01": ("tool",),
    "kitchen_utensil.n.01": ("kitchen",),
    "kitchen_appliance.n.01": ("kitchen",),
    "sports_equipment.n.01": ("sport",),
    "plaything.n.01": ("toy",),
    "geological_formation.n.01": ("landscape",),
}


def clean_label(name: str) -> str:
    """'kite (bird of prey)' -> 'kite'; proper nouns keep their capitals only when the whole name is one."""
    name = re.sub(r"\s*\(.*?\)", "", name).strip()
    return name if name[:1].isupper() and " " not in name else name.lower()


def draft() -> str:
    h = imagenet_hierarchy()
    lines = ["[imagenet]"]
    for wnid, name in zip(h.class_ids, h.class_names, strict=True):
        synset = synset_from_wnid(wnid)
        ancestors = {s.name() for s in synset.closure(lambda s: s.hypernyms() + s.instance_hypernyms())}
        ancestors.add(synset.name())
        categories: list[str] = []
        for rule, cats in CATEGORY_RULES.items():
            if rule in ancestors:
                categories += [c for c in cats if c not in categories]
        label, detail = clean_label(name), ""
        if "dog.n.01" in ancestors:
            label, detail = "dog", clean_label(name).lower()
        elif "domestic_cat.n.01" in ancestors:
            label, detail = "cat", clean_label(name).lower()
        fields = [f'label = "{label}"']
        if detail:
            fields.append(f'detail = "{detail}"')
        fields.append("categories = [" + ", ".join(f'"{c}"' for c in categories) + "]")
        lines.append(f"{wnid} = {{{', '.join(fields)}}}  # {name}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="where to write the draft (default: stdout)")
    args = parser.parse_args()
    text = draft()
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote a draft of {text.count(chr(10)) - 1} classes to {args.out}: review every line", file=sys.stderr)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
