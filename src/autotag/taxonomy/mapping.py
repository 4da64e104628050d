"""Map any source label set (ImageNet's classes, a trained model's labels) onto a target vocabulary.

For each source label, in this order:
1. a manual override (a person's decision) always wins;
2. hypernym closure: the label's WordNet synset, or one of its ancestors, is a tag's synset;
3. an exact word: the label's name is a tag's name or alias, or contains one of its keywords;
4. similarity: WordNet Wu-Palmer similarity and text-embedding similarity of names and glosses
   propose the best tag with a score; a high, clear score maps, a middling one is "ambiguous"
   (left for review), a low one is "unmapped".
Labels that map to nothing land in the vocabulary's `other` bucket. `write_mapping` writes the
machine-readable mapping and a review file a person can edit and feed back as overrides.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autotag.taxonomy.vocabulary import Vocabulary, read_structured
from autotag.types import AutotagError
from autotag.usertags import normalise_user_tag

# Similarity thresholds on the combined score (mean of Wu-Palmer and text cosine, each 0..1).
ACCEPT_SCORE = 0.80  # at or above, with a clear margin over the runner-up: mapped
ACCEPT_MARGIN = 0.05
PROPOSE_SCORE = 0.55  # at or above: ambiguous, proposed for review; below: unmapped
STATUSES = ("override", "mapped", "ambiguous", "unmapped")


@dataclass(frozen=True)
class SourceLabel:
    id: str  # the key of the label: a WordNet id for ImageNet, the label itself for trained models
    name: str
    synset: str | None = None  # WordNet id ("n02123045") or name ("tabby.n.01") when known


@dataclass
class Match:
    tag: str
    score: float
    method: str  # override | hypernym | word | similarity
    reason: str


@dataclass
class LabelMapping:
    label: SourceLabel
    status: str
    tags: list[str]  # decided tags; empty means the `other` bucket
    reason: str
    proposals: list[Match] = field(default_factory=list)


@dataclass
class Mapping:
    vocabulary: str
    tag_names: list[str]
    other: str
    source: str
    entries: list[LabelMapping]

    @property
    def label_ids(self) -> list[str]:
        return [e.label.id for e in self.entries]

    def weight_matrix(self) -> np.ndarray:
        """(S, T) float32: 1 where source label s counts towards target tag t (column order tag_names)."""
        col = {t: j for j, t in enumerate(self.tag_names)}
        w = np.zeros((len(self.entries), len(self.tag_names)), np.float32)
        for i, e in enumerate(self.entries):
            for t in e.tags:
                w[i, col[t]] = 1.0
        return w

    def tags_of(self, label_id: str) -> list[str]:
        for e in self.entries:
            if e.label.id == label_id or e.label.name == label_id:
                return list(e.tags) or [self.other]
        raise AutotagError(f"source label {label_id!r} is not in this mapping")

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATUSES}
        for e in self.entries:
            out[e.status] += 1
        out["in_other"] = sum(1 for e in self.entries if not e.tags)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "vocabulary": self.vocabulary,
            "source": self.source,
            "tags": self.tag_names,
            "other": self.other,
            "counts": self.counts(),
            "entries": [
                {"id": e.label.id, "name": e.label.name, "synset": e.label.synset, "status": e.status,
                 "tags": e.tags, "reason": e.reason,
                 "proposals": [{**asdict(m), "score": round(m.score, 4)} for m in e.proposals]}
                for e in self.entries
            ],
        }  # fmt: skip

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Mapping:
        try:
            entries = [
                LabelMapping(
                    SourceLabel(e["id"], e["name"], e.get("synset")),
                    e["status"],
                    list(e["tags"]),
                    e.get("reason", ""),
                    [Match(**m) for m in e.get("proposals", [])],
                )
                for e in raw["entries"]
            ]
            return cls(raw["vocabulary"], list(raw["tags"]), raw.get("other", "other"), raw["source"], entries)
        except (KeyError, TypeError) as exc:
            raise AutotagError(f"not a mapping file (missing {exc}); make one with `autotag vocab map`") from exc

    @classmethod
    def load(cls, path: str | Path) -> Mapping:
        return cls.from_dict(json.loads(Path(path).read_text()))


# -- sources ---------------------------------------------------------------------------------------
def imagenet_labels() -> list[SourceLabel]:
    from autotag.taxonomy.imagenet import imagenet_hierarchy

    h = imagenet_hierarchy()
    return [SourceLabel(i, n, i) for i, n in zip(h.class_ids, h.class_names, strict=True)]


def _plain_labels(names: Sequence[str]) -> list[SourceLabel]:
    return [SourceLabel(str(n), str(n)) for n in names]


def source_labels(source: str | Path) -> list[SourceLabel]:
    """'imagenet', a trained model folder (its labels.json), or a .txt/.json/.yaml list of labels."""
    if str(source).lower() == "imagenet":
        return imagenet_labels()
    path = Path(source)
    if path.is_dir():
        from autotag.modelfolder import ModelFolder

        return _plain_labels(ModelFolder(path).labels())
    if path.is_file():
        if path.suffix.lower() == ".txt":
            return _plain_labels([ln.strip() for ln in path.read_text().splitlines() if ln.strip()])
        raw = read_structured(path)
        if isinstance(raw, dict):
            raw = raw.get("labels")
        if isinstance(raw, list) and raw:
            return _plain_labels([str(x) for x in raw])
        raise AutotagError(f"{path}: expected a list of labels (or a mapping with a 'labels' list)")
    raise AutotagError(f"label source {source!r} not found: use 'imagenet', a model folder or a labels file")


# -- overrides -------------------------------------------------------------------------------------
def load_overrides(path: str | Path | None, vocab: Vocabulary) -> dict[str, list[str]]:
    """An overrides file -> {label id or lower-cased name: [tags]} ([] means `other`).

    Two shapes are accepted: a plain mapping `label: [tag, ...]` (or `label: other`), and the
    review.yaml that `write_mapping` produces, where only entries a person marked
    `status: reviewed` count.
    """
    if path is None:
        return {}
    raw = read_structured(Path(path))
    if raw is None:
        return {}
    if isinstance(raw, dict) and isinstance(raw.get("labels"), dict):  # a review file
        raw = {k: v.get("tags", []) for k, v in raw["labels"].items()
               if isinstance(v, dict) and str(v.get("status", "")).lower() == "reviewed"}  # fmt: skip
    if not isinstance(raw, dict):
        raise AutotagError(f"{path}: overrides must map a source label to a list of tags")
    out: dict[str, list[str]] = {}
    for key, value in raw.items():
        names = [value] if isinstance(value, str) else value
        if names is None:
            names = []
        if not isinstance(names, list):
            raise AutotagError(f"{path}: {key}: expected a list of tags, got {value!r}")
        tags = []
        for name in names:
            tag = vocab.resolve(str(name))
            if tag is None:
                raise AutotagError(
                    f"{path}: {key}: unknown tag {name!r}; valid: {', '.join(vocab.names)}, {vocab.other}"
                )
            if tag != vocab.other:
                tags.append(tag)
        out[str(key).strip().lower()] = list(dict.fromkeys(tags))
    return out


# -- the mapper ------------------------------------------------------------------------------------
def _label_text(label: SourceLabel, gloss: str) -> str:
    return f"{label.name}: {gloss}" if gloss else label.name


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


class _WordNetView:
    """Resolves synsets and hypernym closures, remembering what it computed."""

    def __init__(self) -> None:
        from autotag.taxonomy.wordnet import wordnet

        self.wn = wordnet()
        self._closure: dict[Any, set] = {}

    def synset(self, ref: str) -> Any:
        if re.match(r"^[nvasr]\d{8}$", ref):
            return self.wn.synset_from_pos_and_offset(ref[0], int(ref[1:]))
        return self.wn.synset(ref)

    def by_name(self, name: str) -> Any | None:
        """The most frequent noun sense of a label name ('T-shirt/top' tries 't-shirt' then 'top')."""
        candidates = [name, *re.split(r"\s*[/,;]\s*", name)]
        for cand in candidates:
            key = re.sub(r"\s+", "_", cand.strip().lower())
            if not key:
                continue
            found = self.wn.synsets(key, pos="n")
            if found:
                return found[0]
        return None

    def closure(self, s: Any) -> set:
        if s not in self._closure:
            self._closure[s] = {s} | set(s.closure(lambda x: x.hypernyms() + x.instance_hypernyms()))
        return self._closure[s]


def map_labels(
    labels: Sequence[SourceLabel],
    vocab: Vocabulary,
    overrides: dict[str, list[str]] | None = None,
    *,
    source: str = "custom",
    use_wordnet: bool = True,
    use_text: bool = True,
) -> Mapping:
    """Map source labels onto the vocabulary's tags; see the module docstring for the order."""
    overrides = overrides or {}
    wn = _WordNetView() if use_wordnet else None
    tag_synsets: dict[str, list[Any]] = {}
    if wn is not None:
        for t in vocab.tags:
            resolved = []
            for ref in t.synsets:
                try:
                    resolved.append(wn.synset(ref))
                except Exception as exc:  # nltk raises WordNetError / ValueError
                    raise AutotagError(
                        f"vocabulary {vocab.name}: tag {t.name}: unknown WordNet synset {ref!r}"
                    ) from exc
            tag_synsets[t.name] = resolved
    tag_words = {t.name: {w for w in (t.name, *t.aliases)} for t in vocab.tags}
    tag_keywords = {t.name: {k.lower() for k in t.keywords} for t in vocab.tags}

    entries: list[LabelMapping] = []
    pending: list[tuple[int, Any, str]] = []  # (entry index, synset or None, gloss) needing similarity
    for label in labels:
        key_hits = [overrides[k] for k in (label.id.lower(), label.name.lower()) if k in overrides]
        if key_hits:
            tags = key_hits[0]
            entries.append(LabelMapping(label, "override", tags, "manual override",
                                        [Match(t, 1.0, "override", "manual override") for t in tags]))  # fmt: skip
            continue
        synset, how = None, ""
        if wn is not None:
            try:
                if label.synset:
                    synset, how = wn.synset(label.synset), "given"
                else:
                    synset, how = wn.by_name(label.name), "by name"
            except Exception:
                synset = None
        matches: list[Match] = []
        if synset is not None:
            ancestors = wn.closure(synset)  # type: ignore[union-attr]
            for t in vocab.tags:
                hit = next((s for s in tag_synsets[t.name] if s in ancestors), None)
                if hit is not None:
                    rel = "is" if hit == synset else "is a kind of"
                    matches.append(Match(t.name, 1.0, "hypernym", f"{synset.name()} ({how}) {rel} {hit.name()}"))
        if not matches:
            label_words = _words(label.name)
            joined = " ".join(label_words)
            for t in vocab.tags:
                exact = {w for w in tag_words[t.name] if " ".join(_words(w)) == joined}
                kw = tag_keywords[t.name] & set(label_words)
                if exact or kw:
                    word = sorted(exact or kw)[0]
                    matches.append(Match(t.name, 1.0, "word", f"label {label.name!r} names {word!r}"))
        if matches:
            reason = "; ".join(f"{m.tag}: {m.reason}" for m in matches)
            entries.append(LabelMapping(label, "mapped", [m.tag for m in matches], reason, matches))
            continue
        entries.append(LabelMapping(label, "unmapped", [], "no hypernym or word match"))
        pending.append((len(entries) - 1, synset, synset.definition() if synset is not None else ""))

    if pending and (use_text or wn is not None):
        _similarity_pass(entries, pending, vocab, tag_synsets, use_text=use_text)
    return Mapping(vocab.name, vocab.names, vocab.other, source, entries)


def _similarity_pass(
    entries: list[LabelMapping],
    pending: list[tuple[int, Any, str]],
    vocab: Vocabulary,
    tag_synsets: dict[str, list[Any]],
    *,
    use_text: bool,
) -> None:
    names = vocab.names
    text_sim = None
    if use_text:
        from autotag.taxonomy.text import text_similarity

        label_texts = [_label_text(entries[i].label, gloss) for i, _, gloss in pending]
        text_sim = np.clip(text_similarity(label_texts, [t.text() for t in vocab.tags]), 0.0, 1.0)
    for row, (i, synset, _gloss) in enumerate(pending):
        parts = []
        if synset is not None and tag_synsets:
            wup = np.array([max((synset.wup_similarity(s) or 0.0 for s in tag_synsets[n]), default=0.0) for n in names])
            parts.append(wup)
        if text_sim is not None:
            parts.append(text_sim[row])
        if not parts:
            continue
        combined = np.mean(parts, axis=0)
        order = np.argsort(-combined)
        proposals = []
        for j in order[:3]:
            detail = []
            if synset is not None and tag_synsets:
                detail.append(f"wup {parts[0][j]:.2f}")
            if text_sim is not None:
                detail.append(f"text {text_sim[row][j]:.2f}")
            proposals.append(Match(names[j], float(combined[j]), "similarity", ", ".join(detail)))
        best = proposals[0]
        margin = best.score - (proposals[1].score if len(proposals) > 1 else 0.0)
        entry = entries[i]
        entry.proposals = proposals
        if best.score >= ACCEPT_SCORE and margin >= ACCEPT_MARGIN:
            entry.status, entry.tags = "mapped", [best.tag]
            entry.reason = f"similar to {best.tag} ({best.score:.2f}; {best.reason})"
        elif best.score >= PROPOSE_SCORE:
            entry.status = "ambiguous"
            entry.reason = (
                f"best guess {best.tag} ({best.score:.2f}), runner-up {proposals[1].tag} "
                f"({proposals[1].score:.2f}): review"
                if len(proposals) > 1
                else f"best guess {best.tag}: review"
            )
        else:
            entry.reason = f"nothing similar enough (best {best.tag} at {best.score:.2f})"


def map_vocabulary(
    target: str | Path | None,
    source: str | Path = "imagenet",
    overrides: str | Path | None = None,
    *,
    use_text: bool = True,
) -> Mapping:
    """The Python form of `autotag vocab map`: load the vocabulary, its source labels and overrides."""
    from autotag.taxonomy.vocabulary import load_vocabulary

    vocab = load_vocabulary(target)
    return map_labels(
        source_labels(source), vocab, load_overrides(overrides, vocab),
        source=str(source), use_text=use_text,
    )  # fmt: skip


# -- output ----------------------------------------------------------------------------------------
REVIEW_HEADER = """\
# Review of the mapping from {source} labels onto the {vocabulary} vocabulary.
# counts: {counts}
# Each entry: the tags the mapper chose (empty = the '{other}' bucket), why, and its proposals.
# To correct an entry, edit its `tags` and set `status: reviewed`, then feed this file back:
#   autotag vocab map --target VOCAB --source SOURCE --overrides THIS_FILE --out DIR
# Only entries marked `reviewed` are taken as overrides; everything else is recomputed.
"""


def review_document(mapping: Mapping) -> dict[str, Any]:
    order = {"ambiguous": 0, "unmapped": 1, "mapped": 2, "override": 3}
    entries = sorted(mapping.entries, key=lambda e: (order[e.status], e.label.name.lower()))
    labels: dict[str, Any] = {}
    for e in entries:
        item: dict[str, Any] = {"name": e.label.name, "status": e.status, "tags": list(e.tags), "reason": e.reason}
        if e.proposals and e.status in {"ambiguous", "unmapped"}:
            item["proposals"] = [f"{m.tag} {m.score:.2f} ({m.reason})" for m in e.proposals]
        labels[e.label.id] = item
    return {"vocabulary": mapping.vocabulary, "source": mapping.source, "counts": mapping.counts(), "labels": labels}


def write_mapping(mapping: Mapping, out_dir: str | Path) -> dict[str, Path]:
    """Write mapping.json (for the suggester) and review.yaml (for a person) into out_dir."""
    import yaml

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"mapping": out / "mapping.json", "review": out / "review.yaml"}
    paths["mapping"].write_text(json.dumps(mapping.to_dict(), indent=1) + "\n")
    header = REVIEW_HEADER.format(source=mapping.source, vocabulary=mapping.vocabulary, other=mapping.other,
                                  counts=json.dumps(mapping.counts()))  # fmt: skip
    body = yaml.safe_dump(review_document(mapping), sort_keys=False, allow_unicode=True, width=120)
    paths["review"].write_text(header + body)
    return paths


# -- target vocabularies over the consumer vocabulary (the default ImageNet model) -----------------------
@dataclass
class ConsumerMapping:
    """Each target tag -> the consumer labels and categories that earn it (taxonomy/consumer.toml), and the
    picture styles (the style head's art styles: a site's "abstract" is earned by abstract art).

    The default model's tags, hashtags and a user's own vocabulary all go through the consumer
    vocabulary, so a target tag is scored by the same evidence (never-lists, chance, confident members).
    """

    vocabulary: str
    tag_names: list[str]
    terms: dict[str, list[str]]  # tag -> consumer labels / categories / picture styles
    reasons: dict[str, str] = field(default_factory=dict)

    def unreachable(self) -> list[str]:
        return [t for t in self.tag_names if not self.terms.get(t)]

    def warnings(self) -> list[str]:
        return [f"{t}: no source label maps here; it will never be suggested" for t in self.unreachable()]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "consumer", "vocabulary": self.vocabulary, "tags": self.tag_names, "terms": self.terms,
                "reasons": self.reasons, "unreachable": self.unreachable()}  # fmt: skip

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ConsumerMapping:
        try:
            return cls(raw["vocabulary"], list(raw["tags"]), {k: list(v) for k, v in raw["terms"].items()},
                       dict(raw.get("reasons", {})))  # fmt: skip
        except (KeyError, TypeError, AttributeError) as exc:
            raise AutotagError(f"not a consumer mapping (missing {exc}); make one with `autotag vocab map`") from exc


def word_forms(word: str) -> list[str]:
    """'#Dogs' -> ['dogs', 'dog']: a word as typed and its singular, for matching consumer words."""
    w = normalise_user_tag(word)
    forms = [w]
    if w.endswith("ies"):
        forms.append(w[:-3] + "y")
    if w.endswith("es"):
        forms.append(w[:-2])
    if w.endswith("s"):
        forms.append(w[:-1])
    return forms


def map_onto_consumer(
    vocab: Vocabulary, consumer: Any, classes: Mapping | None = None, styles: Sequence[str] = ()
) -> ConsumerMapping:
    """Tie each target tag to consumer terms: a consumer label or category, or one of `styles` (the picture
    styles the style head names, autotag.read.ART_STYLES), that its name, alias or keyword names ("dogs" ->
    dog, "abstract" -> the abstract style), and, given a class-level mapping (WordNet hypernyms, reviewed
    overrides), every consumer label most of whose classes map to the tag."""
    # terms that can fire: labels, categories with members, styles
    known = {*consumer.labels, *(c for c in consumer.categories if consumer.members(c)), *styles}
    terms: dict[str, list[str]] = {t.name: [] for t in vocab.tags}
    reasons: dict[str, list[str]] = {t.name: [] for t in vocab.tags}
    for t in vocab.tags:
        for word in t.words():
            hit = next((f for f in word_forms(word) if f in known), None)
            if hit and hit not in terms[t.name]:
                terms[t.name].append(hit)
                what = "the picture style" if hit in styles else "the word"
                reasons[t.name].append(f"{hit!r} is {what} {word!r}")
    if classes is not None:
        by_id = {e.label.id: set(e.tags) for e in classes.entries}
        for label in consumer.labels:
            members = [e.key for e in consumer.classes_of(label) if not e.never]
            for t in vocab.tags:
                votes = sum(t.name in by_id.get(k, ()) for k in members)
                if members and votes * 2 >= len(members) and label not in terms[t.name]:
                    terms[t.name].append(label)
                    reasons[t.name].append(f"{label!r}: {votes} of its {len(members)} classes map here")
    return ConsumerMapping(vocab.name, vocab.names, terms, {k: "; ".join(v[:6]) for k, v in reasons.items()})


def tag_truth(mapping: ConsumerMapping, vocab: Vocabulary, words: Sequence[Sequence[str]]) -> np.ndarray:
    """(N, T) bool: picture i is a positive for tag j when one of its words is the tag (name, alias,
    keyword) or one of the consumer terms that earn it. Fits a target vocabulary on labelled pictures."""
    keys = []
    for name in mapping.tag_names:
        t = vocab.tag(name)
        keys.append({f for w in (*t.words(), *mapping.terms.get(name, [])) for f in word_forms(w)})
    out = np.zeros((len(words), len(keys)), bool)
    for i, ws in enumerate(words):
        forms = {f for w in ws for f in word_forms(w)}
        out[i] = [bool(forms & k) for k in keys]
    return out
