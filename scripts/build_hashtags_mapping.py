"""Rebuild the shipped ImageNet -> photo-hashtag mapping (src/autotag/taxonomy/hashtags_imagenet.json).

Needs WordNet (Debian's wordnet-base) and the text model; the result lets `autotag hashtags` run
without either. The review file goes to --review (default .cache/hashtags-review) for a person to read.

    .venv/bin/python scripts/build_hashtags_mapping.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from autotag.taxonomy.mapping import map_vocabulary, write_mapping

TAXONOMY = Path(__file__).resolve().parents[1] / "src" / "autotag" / "taxonomy"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--review", default=".cache/hashtags-review", help="folder for mapping.json + review.yaml")
    args = parser.parse_args()
    mapping = map_vocabulary(
        TAXONOMY / "hashtags.yaml", "imagenet", overrides=TAXONOMY / "hashtags_imagenet_overrides.yaml"
    )
    paths = write_mapping(mapping, args.review)
    doc = mapping.to_dict()
    for entry in doc["entries"]:  # the shipped file keeps decisions and reasons; proposals stay in the review
        entry.pop("proposals")
    (TAXONOMY / "hashtags_imagenet.json").write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(json.dumps(mapping.counts()), "review:", paths["review"])
    per_tag = {t: sum(t in e.tags for e in mapping.entries) for t in mapping.tag_names}
    print("source classes per tag:", json.dumps(per_tag))


if __name__ == "__main__":
    main()
