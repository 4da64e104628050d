"""The consumer vocabulary (consumer.toml): what the default tagger may say, in a person's words.

Each ImageNet class and each COCO detector class maps to a plain label, an optional detail (a breed or
species), categories, an optional minimum score and a never flag. This module reads and checks the file
(every ImageNet class exactly once; an unknown key or category is an error naming the file and line)
and precomputes the index arrays the decisions (taxonomy/decisions.py) sum probabilities over.

TOML rather than YAML: the standard library reads it (no dependency on the default tagging path) and
it parses ~3x faster than PyYAML's C loader, which counts at the start of every `autotag tag`.
"""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from autotag.types import AutotagError

ENTRY_KEYS = ("label", "detail", "categories", "min", "never", "confirmed_by")
SECTIONS = ("categories", "imagenet", "coco")
# The 80 COCO classes of the object detector (channel order of its heatmap).
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip


@dataclass(frozen=True)
class SourceClass:
    """One line of the file: a source class and what it means to a person."""

    key: str  # WordNet id (ImageNet) or COCO name
    label: str
    detail: str = ""
    categories: tuple[str, ...] = ()  # with everything they imply, most specific first
    min: float | None = None
    never: bool = False
    line: int = 0
    # COCO only: ImageNet labels that name the same thing beyond its own label and category (the
    # classifier's "soccer ball" and "basketball" confirm a detected "sports ball")
    confirmed_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConsumerVocabulary:
    path: str
    categories: tuple[str, ...]  # declared order
    imagenet: tuple[SourceClass, ...]  # in the classifier's column order
    coco: dict[str, SourceClass]
    # category -> itself and every category it implies, most specific first (sunset -> sunset, sky)
    implied: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # derived index arrays (see _derive)
    labels: tuple[str, ...] = ()  # every label a kept ImageNet class can give, in first-seen order
    label_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (1000,), -1 for never
    label_min: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (L,), 0 where the file gives none
    group_label: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (G,) label of group g
    group_category: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (G,) category of g
    group_classes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # classes, group by group
    group_starts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    label_share: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (L,) share of the kept classes
    group_share: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (G,) likewise per group
    # the COCO names some ImageNet classes name too (same label, the COCO label is one of their categories:
    # a detected "bird" and the classifier's 59 bird classes, or its confirmed_by); those classes as a
    # (K, 1000) 0/1 matrix, a row per name (a detection's support: object_support); each name's share of
    # the kept classes (its chance level): the classifier-alone objects in one product per picture
    coco_named: tuple[str, ...] = ()
    coco_matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    coco_share: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def label_categories(self, label: str) -> tuple[str, ...]:
        """Every category some class of this label belongs to."""
        found = [c for e in self.imagenet if e.label == label and not e.never for c in e.categories]
        found += [c for e in self.coco.values() if e.label == label and not e.never for c in e.categories]
        return tuple(dict.fromkeys(found))

    def members(self, category: str) -> tuple[str, ...]:
        """Labels that can earn a category (ImageNet and COCO alike)."""
        self.check_category(category)
        found = [e.label for e in (*self.imagenet, *self.coco.values()) if category in e.categories and not e.never]
        return tuple(dict.fromkeys(found))

    def classes_of(self, label: str) -> tuple[SourceClass, ...]:
        return tuple(e for e in self.imagenet if e.label == label)

    def entry(self, key: str) -> SourceClass:
        """An ImageNet WordNet id or a COCO name -> its line."""
        for e in self.imagenet:
            if e.key == key:
                return e
        if key in self.coco:
            return self.coco[key]
        raise AutotagError(f"{self.path}: no class {key!r} (give a WordNet id like n02123045 or a COCO name)")

    def object_support(self, probs: np.ndarray, coco_name: str) -> float:
        """How sure the classifier is of what a detected COCO class names: the summed probability of the
        ImageNet classes with the same label or category, or named by its `confirmed_by` (0 when it has
        none, e.g. "toothbrush")."""
        if coco_name not in self.coco_named:
            return 0.0
        classes = np.flatnonzero(self.coco_matrix[self.coco_named.index(coco_name)])
        return float(np.asarray(probs)[classes].sum())

    def named_by_classifier(
        self, probs: np.ndarray, minimum: float, above_chance: bool = True, class_floor: float = 0.0
    ) -> dict[str, float]:
        """COCO name -> the classifier's support for it, where that reaches `minimum` (above 1: none).
        The objects a person would name that the classifier alone is sure of, with no box. Scored as
        label scores are (decisions.evidence_for): classes under `class_floor` count for nothing, and above
        chance (118 dog breeds get 11.8% of a clueless prediction for free), so an object named by the
        same classes as a label scores as that label does."""
        if minimum > 1.0 or not self.coco_named:
            return {}
        p = np.asarray(probs, np.float64)
        p = np.where(p >= class_floor, p, 0.0) if class_floor > 0.0 else p
        scores = self.coco_matrix @ p
        if above_chance:
            scores = np.clip((scores - self.coco_share) / (1.0 - self.coco_share), 0.0, 1.0)
        return {self.coco_named[k]: float(scores[k]) for k in np.flatnonzero(scores >= minimum)}

    def check_category(self, name: str) -> None:
        if name not in self.categories:
            raise AutotagError(f"unknown category {name!r}; valid: {', '.join(self.categories)}")

    def words(self) -> frozenset[str]:
        """Every word the vocabulary can show: labels, details and categories (for jargon checks)."""
        out = set(self.categories)
        for e in (*self.imagenet, *self.coco.values()):
            if not e.never:
                out.add(e.label)
                if e.detail:
                    out.add(e.detail)
        return frozenset(out)


# -- reading -----------------------------------------------------------------------------------------
_KEY_LINE = re.compile(r'^\s*(?:"([^"]*)"|([A-Za-z0-9_\-]+))\s*=')
_SECTION_LINE = re.compile(r"^\s*\[\s*([A-Za-z0-9_\-]+)\s*\]")


def _key_lines(text: str) -> dict[tuple[str, str], int]:
    """(section, key) -> 1-based line number, so errors can point at the line to fix."""
    lines: dict[tuple[str, str], int] = {}
    section = ""
    for number, line in enumerate(text.splitlines(), 1):
        if m := _SECTION_LINE.match(line):
            section = m.group(1)
            lines[("", section)] = number
        elif m := _KEY_LINE.match(line):
            lines.setdefault((section, m.group(1) if m.group(1) is not None else m.group(2)), number)
    return lines


def _expand(name: str, implies: dict[str, tuple[str, ...]], seen: tuple[str, ...] = ()) -> list[str]:
    if name in seen:
        raise AutotagError(f"category {name!r} implies itself through {' -> '.join(seen)}")
    out = [name]
    for parent in implies.get(name, ()):
        out += [c for c in _expand(parent, implies, (*seen, name)) if c not in out]
    return out


def parse_consumer(
    text: str, path: str = "consumer.toml", imagenet_ids: tuple[str, ...] | None = None
) -> ConsumerVocabulary:
    """Parse and check the vocabulary text; `imagenet_ids` is the classifier's column order."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AutotagError(f"{path} is not valid TOML: {exc}") from exc
    lines = _key_lines(text)

    def where(section: str, key: str) -> str:
        return f"{path}:{lines.get((section, key), 0)}"

    for section in raw:
        if section not in SECTIONS:
            raise AutotagError(f"{where('', section)}: unknown section [{section}]; valid: {', '.join(SECTIONS)}")
    declared = raw.get("categories")
    if not isinstance(declared, dict) or not declared:
        raise AutotagError(f"{path}: a [categories] section naming every category is needed")
    implies: dict[str, tuple[str, ...]] = {}
    for name, spec in declared.items():
        if not isinstance(spec, dict) or set(spec) - {"implies"}:
            at = where("categories", name)
            raise AutotagError(f"{at}: category {name!r}: write it as {{}} or {{implies = [...]}}")
        parents = spec.get("implies", [])
        for parent in parents:
            if parent not in declared:
                raise AutotagError(f"{where('categories', name)}: category {name!r} implies unknown {parent!r}")
        implies[name] = tuple(parents)
    categories = tuple(declared)
    expanded = {c: tuple(_expand(c, implies)) for c in categories}

    def entry(section: str, key: str, spec: Any) -> SourceClass:
        at = where(section, key)
        if not isinstance(spec, dict):
            raise AutotagError(f"{at}: {key}: expected {{label = \"...\", categories = [...]}}")
        unknown = sorted(set(spec) - set(ENTRY_KEYS))
        if unknown:
            raise AutotagError(f"{at}: {key}: unknown key {unknown[0]!r}; valid: {', '.join(ENTRY_KEYS)}")
        never = spec.get("never", False)
        label = spec.get("label", "")
        if not isinstance(never, bool):
            raise AutotagError(f"{at}: {key}: never must be true or false")
        if not isinstance(label, str) or (not label.strip() and not never):
            raise AutotagError(f"{at}: {key}: a label (a plain word) is needed")
        cats: list[str] = []
        raw_cats = spec.get("categories", [])
        if not isinstance(raw_cats, list):
            raise AutotagError(f"{at}: {key}: categories must be a list")
        for c in raw_cats:
            if c not in expanded:
                raise AutotagError(f"{at}: {key}: unknown category {c!r}; valid: {', '.join(categories)}")
            cats += [x for x in expanded[c] if x not in cats]
        minimum = spec.get("min")
        if minimum is not None and (isinstance(minimum, bool) or not isinstance(minimum, (int, float))
                                    or not 0.0 <= minimum <= 1.0):  # fmt: skip
            raise AutotagError(f"{at}: {key}: min must be a number from 0 to 1")
        detail = spec.get("detail", "")
        if not isinstance(detail, str):
            raise AutotagError(f"{at}: {key}: detail must be a string")
        minimum = None if minimum is None else float(minimum)
        confirmed_by = spec.get("confirmed_by", [])
        if section != "coco" and confirmed_by:
            raise AutotagError(f"{at}: {key}: confirmed_by is for COCO classes only")
        if not isinstance(confirmed_by, list) or not all(isinstance(x, str) for x in confirmed_by):
            raise AutotagError(f"{at}: {key}: confirmed_by must be a list of ImageNet labels")
        line = lines.get((section, key), 0)
        return SourceClass(key, label.strip(), detail.strip(), tuple(cats), minimum, never, line, tuple(confirmed_by))

    inet = raw.get("imagenet") or {}
    if not isinstance(inet, dict):
        raise AutotagError(f"{path}: [imagenet] must map WordNet ids to entries")
    entries = {k: entry("imagenet", k, v) for k, v in inet.items()}
    if imagenet_ids is not None:
        known = set(imagenet_ids)
        for k in entries:
            if k not in known:
                raise AutotagError(f"{where('imagenet', k)}: {k} is not an ImageNet-1k class")
        missing = [k for k in imagenet_ids if k not in entries]
        if missing:
            raise AutotagError(
                f"{path}: {len(missing)} ImageNet classes have no line (every class needs exactly one): "
                f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
            )
        ordered = tuple(entries[k] for k in imagenet_ids)
    else:
        ordered = tuple(entries.values())
    coco_raw = raw.get("coco") or {}
    coco = {k: entry("coco", k, v) for k, v in coco_raw.items()}
    inet_labels = {e.label for e in ordered if not e.never}
    for k, c in coco.items():
        if k not in COCO_CLASSES:
            raise AutotagError(f"{where('coco', k)}: {k!r} is not a COCO class; valid: {', '.join(COCO_CLASSES)}")
        for name in c.confirmed_by:
            if name not in inet_labels:
                raise AutotagError(f"{where('coco', k)}: {k}: confirmed_by {name!r} is no ImageNet label of the file")
    return _derive(ConsumerVocabulary(path, categories, ordered, coco, expanded))


def _derive(v: ConsumerVocabulary) -> ConsumerVocabulary:
    labels: dict[str, int] = {}
    index = np.full(len(v.imagenet), -1, np.int64)
    for i, e in enumerate(v.imagenet):
        if not e.never:
            index[i] = labels.setdefault(e.label, len(labels))
    minimum = np.zeros(len(labels))
    for i, e in enumerate(v.imagenet):
        if not e.never and e.min is not None:
            minimum[index[i]] = max(minimum[index[i]], e.min)
    # (label, category) groups: a category's evidence is its best group, never a sum over groups
    cat_pos = {c: j for j, c in enumerate(v.categories)}
    groups: dict[tuple[int, int], list[int]] = {}
    for i, e in enumerate(v.imagenet):
        if not e.never:
            for c in e.categories:
                groups.setdefault((int(index[i]), cat_pos[c]), []).append(i)
    keys = sorted(groups, key=lambda g: (g[1], g[0]))
    flat = [i for k in keys for i in groups[k]]
    starts = np.cumsum([0] + [len(groups[k]) for k in keys[:-1]]) if keys else np.zeros(0, np.int64)
    kept = max(int((index >= 0).sum()), 1)
    support = {
        name: np.array([i for i, e in enumerate(v.imagenet) if not e.never and (
            e.label == c.label or c.label in e.categories or e.label in c.confirmed_by)], np.int64)
        for name, c in v.coco.items() if not c.never
    }  # fmt: skip
    named = tuple(name for name, classes in support.items() if len(classes))
    matrix = np.zeros((len(named), len(v.imagenet)))
    for k, name in enumerate(named):
        matrix[k, support[name]] = 1.0
    return ConsumerVocabulary(
        v.path, v.categories, v.imagenet, v.coco, v.implied,
        labels=tuple(labels), label_index=index, label_min=minimum,
        group_label=np.array([k[0] for k in keys], np.int64), group_category=np.array([k[1] for k in keys], np.int64),
        group_classes=np.array(flat, np.int64), group_starts=np.asarray(starts, np.int64),
        label_share=np.bincount(index[index >= 0], minlength=len(labels)) / kept,
        group_share=np.array([len(groups[k]) for k in keys]) / kept,
        coco_named=named, coco_matrix=matrix,
        coco_share=np.array([len(support[name]) / kept for name in named]),
    )  # fmt: skip


def load_consumer(path: str | Path | None = None) -> ConsumerVocabulary:
    """The shipped vocabulary (None) or a file of the same shape, checked against ImageNet's classes."""
    from autotag.taxonomy.imagenet import imagenet_hierarchy

    ids = imagenet_hierarchy().class_ids
    if path is None:
        text = resources.files("autotag.taxonomy").joinpath("consumer.toml").read_text(encoding="utf-8")
        return parse_consumer(text, "consumer.toml", ids)
    p = Path(path)
    if not p.is_file():
        raise AutotagError(f"vocabulary file {p} does not exist")
    return parse_consumer(p.read_text(encoding="utf-8"), str(p), ids)


@functools.cache
def default_consumer() -> ConsumerVocabulary:
    return load_consumer()
