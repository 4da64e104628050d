"""The ImageNet-1k label set as a WordNet hierarchy: leaf names and ids, and ancestor scores.

An ancestor's score is the probability mass of the classes beneath it (a sum, not a max), so
"dog" is sure when the model hesitates between 20 breeds. Data comes from the shipped
imagenet_hierarchy.json (made by scripts/build_imagenet_hierarchy.py); no WordNet needed here.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources

import numpy as np

# Ancestors too generic to help anyone search: dropped from tags. The one list of them.
UNINFORMATIVE_ANCESTORS = frozenset(
    {
        "entity", "physical entity", "abstraction", "object", "whole", "artifact", "living thing",
        "organism", "causal agent", "matter", "instrumentality", "part", "relation", "attribute",
        "communication", "substance", "solid", "piece", "point", "location", "shape", "material",
        "agent", "psychological feature", "group", "measure", "natural object", "unit", "chordate",
        "device", "commodity", "covering", "structure", "container", "implement", "equipment",
        "placental", "vertebrate", "instrument", "conveyance", "fluid",
    }
)  # fmt: skip


@dataclass(frozen=True)
class ImageNetHierarchy:
    class_ids: tuple[str, ...]  # WordNet ids, column order of the logits
    class_names: tuple[str, ...]
    ancestor_ids: tuple[str, ...]  # informative ancestors only
    ancestor_names: tuple[str, ...]
    ancestor_matrix: np.ndarray  # (1000, A) float32, 1 where the class lies beneath the ancestor
    ancestor_leaves: np.ndarray  # the matrix's non-zero rows, column by column
    ancestor_starts: np.ndarray  # where each column's run starts in ancestor_leaves

    def ancestor_scores(self, probs: np.ndarray) -> np.ndarray:
        """(N, 1000) class probabilities -> (N, A) summed probabilities of each ancestor's classes.

        Sums over index runs rather than `probs @ ancestor_matrix`: called once per image, the matrix
        product woke numpy's BLAS thread pool, whose spin-waiting took ~0.5 s of CPU from the decoding
        and inference threads of a 200-photo `autotag tag` run on 2 cores (bench/bench_tagging.py).
        """
        return np.add.reduceat(probs[:, self.ancestor_leaves], self.ancestor_starts, axis=1)


@functools.cache
def imagenet_hierarchy() -> ImageNetHierarchy:
    raw = json.loads(resources.files("autotag.taxonomy").joinpath("imagenet_hierarchy.json").read_text())
    kept = [a for a in raw["ancestors"] if a["name"] not in UNINFORMATIVE_ANCESTORS]
    matrix = np.zeros((len(raw["classes"]), len(kept)), np.float32)
    for col, ancestor in enumerate(kept):
        matrix[ancestor["leaves"], col] = 1.0
    column, leaf = np.nonzero(matrix.T)  # ordered by column; no column is empty (ancestors come from leaves)
    return ImageNetHierarchy(
        class_ids=tuple(c["id"] for c in raw["classes"]),
        class_names=tuple(c["name"] for c in raw["classes"]),
        ancestor_ids=tuple(a["id"] for a in kept),
        ancestor_names=tuple(a["name"] for a in kept),
        ancestor_matrix=matrix,
        ancestor_leaves=leaf,
        ancestor_starts=np.searchsorted(column, np.arange(len(kept))),
    )
