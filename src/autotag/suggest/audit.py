"""Tag audit, the inverse of tagging: given an image and the tags a user typed, score how well each
tag fits and flag the ones that do not (spam, filler, wrong).

A tag's relevance is the best evidence for it among the model's concepts:
    relevance(tag) = max over concepts c of  score(c | image) * affinity(tag, c)
- concepts are the model's labels (and, for the default ImageNet model, their WordNet ancestors and
  the vocabulary's hashtags: "cat" is backed by "tabby cat", by "domestic cat" and by #cats);
- affinity(tag, c) comes from *grounding* learned on labelled uploads (how much more often c is
  present when users type the tag, a lift in 0..1) when the tag has been seen often enough, else
  from text similarity (all-MiniLM-L6-v2) between the tag and the concept's name, rescaled so that
  unrelated words get 0.

The default ImageNet model audits through the consumer vocabulary instead (ConsumerAuditor): a user
tag is tied to the consumer labels and categories it names; a tag the model has no concept for
("sunset", "instagood") is "cannot judge" and never flagged; only a tag the model could see and does
not see ("cat" on a photo of dogs) is flagged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from autotag.types import AutotagError
from autotag.usertags import normalise_user_tag, parse_user_tags

TEXT_FLOOR = 0.5  # cosine similarity at or below this counts as unrelated ("car" vs "cats" is 0.47)
FLAG_BELOW = 0.15  # default: a tag whose relevance is below this is flagged
MIN_CONCEPT_SCORE = 0.005  # concepts scoring less cannot back a tag (relevance < 0.005 anyway)


@dataclass(frozen=True)
class TagAudit:
    tag: str
    relevance: float
    flagged: bool
    evidence: str  # the concept that backs the tag best, and how
    judged: bool = True  # False: the model has no concept for the tag, so it cannot judge it

    def to_dict(self) -> dict:
        out = {"tag": self.tag, "relevance": round(self.relevance, 4), "flagged": self.flagged,
               "evidence": self.evidence}  # fmt: skip
        if not self.judged:
            out["cannot_judge"] = True
        return out


def text_affinity(tags: Sequence[str], concepts: Sequence[str], floor: float = TEXT_FLOOR) -> np.ndarray:
    """(len(tags), len(concepts)) in 0..1: cosine similarity above `floor`, rescaled."""
    from autotag.taxonomy.text import text_similarity

    sims = text_similarity([normalise_user_tag(t) for t in tags], [c.replace("_", " ") for c in concepts])
    return np.clip((sims - floor) / (1.0 - floor), 0.0, 1.0)


def fit_grounding(
    user_tags: Sequence[Sequence[str]], label_matrix: np.ndarray, min_count: int = 5
) -> dict[str, np.ndarray]:
    """Learn tag -> label affinities from uploads whose true labels are known.

    affinity(u, l) = (P(l | u typed) - P(l)) / (1 - P(l)), clipped to 0..1: 1 when the tag always
    comes with the label, 0 when typing it tells nothing (filler such as "instagood").
    """
    y = np.asarray(label_matrix, np.float64)
    if len(user_tags) != len(y):
        raise AutotagError("fit_grounding: one list of user tags per row of the label matrix is needed")
    base = y.mean(axis=0)
    rows: dict[str, list[int]] = {}
    for i, tags in enumerate(user_tags):
        for t in dict.fromkeys(normalise_user_tag(t) for t in tags):
            rows.setdefault(t, []).append(i)
    out = {}
    for tag, idx in rows.items():
        if len(idx) >= min_count:
            p = y[idx].mean(axis=0)
            out[tag] = np.clip((p - base) / np.maximum(1.0 - base, 1e-6), 0.0, 1.0).astype(np.float32)
    return out


class TagAuditor:
    """Scores user tags against concept scores of one image.

    `concepts`: names of the columns of the score vectors passed to `audit`; `grounding`: learned
    affinities over the same columns (optional; unseen tags fall back to text similarity).
    """

    def __init__(
        self, concepts: Sequence[str], grounding: dict[str, np.ndarray] | None = None, *,
        flag_below: float = FLAG_BELOW, text_floor: float = TEXT_FLOOR, use_text: bool = True,
    ):  # fmt: skip
        self.concepts = list(concepts)
        self.grounding = grounding or {}
        for tag, vec in self.grounding.items():
            if len(vec) != len(self.concepts):
                raise AutotagError(f"grounding of {tag!r} has {len(vec)} columns, expected {len(self.concepts)}")
        self.flag_below = flag_below
        self.text_floor = text_floor
        self.use_text = use_text

    def affinity(self, tags: Sequence[str], columns: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
        """(T, C') affinities to the concepts in `columns` (default all), and per tag where they came
        from ('grounding' or 'text')."""
        cols = np.arange(len(self.concepts)) if columns is None else np.asarray(columns, int)
        keys = [normalise_user_tag(t) for t in tags]
        out = np.zeros((len(keys), len(cols)), np.float32)
        how = ["none"] * len(keys)
        unseen = [i for i, k in enumerate(keys) if k not in self.grounding]
        for i, k in enumerate(keys):
            if k in self.grounding:
                out[i], how[i] = self.grounding[k][cols], "grounding"
        if unseen and self.use_text and len(cols):
            names = [self.concepts[j] for j in cols]
            out[unseen] = text_affinity([keys[i] for i in unseen], names, self.text_floor)
            for i in unseen:
                how[i] = "text"
        return out, how

    def relevance(self, concept_scores: np.ndarray, tags: Sequence[str]) -> np.ndarray:
        """(N, C) concept scores, tags typed for all N images -> (N, T) relevance in 0..1."""
        aff, _ = self.affinity(tags)
        s = np.atleast_2d(np.asarray(concept_scores, np.float32))
        return (s[:, None, :] * aff[None, :, :]).max(axis=2)

    def audit(self, concept_scores: np.ndarray, tags: Sequence[str], flag_below: float | None = None) -> list[TagAudit]:
        """One image's (C,) concept scores and its user tags -> a TagAudit per tag, in input order."""
        cut = self.flag_below if flag_below is None else flag_below
        tags = [t for t in dict.fromkeys(t.strip() for t in tags) if t]
        if not tags:
            return []
        s = np.asarray(concept_scores, np.float32).ravel()
        if len(s) != len(self.concepts):
            raise AutotagError(f"expected {len(self.concepts)} concept scores, got {len(s)}")
        # concepts the image gives no evidence for cannot back a tag: skip their text similarity
        cols = np.flatnonzero(s >= MIN_CONCEPT_SCORE)
        aff, how = self.affinity(tags, cols)
        contrib = aff * s[cols][None, :]
        out = []
        for i, tag in enumerate(tags):
            j = int(contrib[i].argmax()) if len(cols) else 0
            rel = float(contrib[i, j]) if len(cols) else 0.0
            if rel > 0:
                evidence = f"{self.concepts[cols[j]]} {s[cols[j]]:.2f} x {how[i]} {aff[i, j]:.2f}"
            else:
                evidence = "nothing in the image relates to it"
            out.append(TagAudit(tag, rel, rel < cut, evidence))
        return out


# -- the default ImageNet model ---------------------------------------------------------------------
def imagenet_concepts(probs: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Concept names and (N, C) scores for the default model: leaves, WordNet ancestors, hashtags."""
    from autotag.suggest.hashtags import default_suggester
    from autotag.taxonomy.imagenet import imagenet_hierarchy

    h = imagenet_hierarchy()
    suggester = default_suggester()
    probs = np.atleast_2d(probs)
    names = list(h.class_names) + list(h.ancestor_names) + list(suggester.tag_names)
    scores = np.concatenate([probs, h.ancestor_scores(probs), suggester.scores(probs)], axis=1)
    return names, np.clip(scores, 0.0, 1.0)


_IMAGENET_AUDITOR: TagAuditor | None = None


def imagenet_auditor() -> TagAuditor:
    global _IMAGENET_AUDITOR
    if _IMAGENET_AUDITOR is None:
        names, _ = imagenet_concepts(np.zeros((1, 1000), np.float32))
        _IMAGENET_AUDITOR = TagAuditor(names)
    return _IMAGENET_AUDITOR


class ConsumerAuditor:
    """Audits user tags against the default model through the consumer vocabulary.

    A tag names consumer terms by its words ("cats" -> cat, "golden retriever" -> the label whose detail
    it is). With no term that can fire, the verdict is "cannot judge". Otherwise its relevance is the best
    evidence among those terms (label scores, category scores, detected objects; the tagger's own
    decisions) and it is flagged below `flag_below` (fitted on the real-photo fit split).
    """

    def __init__(self, consumer: Any = None, params: Any = None, flag_below: float | None = None) -> None:
        from autotag.taxonomy.consumer import default_consumer
        from autotag.taxonomy.decisions import default_params

        self.consumer = consumer or default_consumer()
        self.params = params or default_params()
        self.flag_below = self.params.audit_flag_below if flag_below is None else flag_below
        c = self.consumer
        self._label_pos = {x: j for j, x in enumerate(c.labels)}
        self._cat_pos = {x: j for j, x in enumerate(c.categories) if c.members(x)}  # categories that can fire
        self._details = {e.detail.lower(): e.label for e in c.imagenet if e.detail and not e.never}
        self._coco = {e.label: k for k, e in c.coco.items() if not e.never}

    def terms(self, tag: str) -> list[str]:
        """The consumer labels / categories a user tag names (empty: the model has no concept for it)."""
        from autotag.taxonomy.mapping import word_forms

        found = []
        for form in word_forms(normalise_user_tag(tag)):
            for hit in (form if form in self._label_pos or form in self._cat_pos else None, self._details.get(form)):
                if hit and hit not in found:
                    found.append(hit)
        return found

    def audit(self, probs: np.ndarray, tags: Sequence[str], detections: Sequence[Any] = (),
              flag_below: float | None = None) -> list[TagAudit]:  # fmt: skip
        """One image's (1000,) class probabilities (and detections) and its user tags -> a TagAudit each."""
        from autotag.taxonomy.decisions import NO_OBJECT_ALONE, evidence_for

        cut = self.flag_below if flag_below is None else flag_below
        # the classifier-alone objects (commit b2c03c1) were never switched on for the audit: doing so
        # is a change to measure (bench/bench_vocab.py --audit), not a tidy-up
        ev = evidence_for(probs, self.params, detections, self.consumer, classifier_object_min=NO_OBJECT_ALONE)
        out = []
        for tag in [t for t in dict.fromkeys(t.strip() for t in tags) if t]:
            terms = self.terms(tag)
            if not terms:
                out.append(TagAudit(tag, 0.0, False, "cannot judge: the model has no concept for it", False))
                continue
            scored = []
            for term in terms:
                if term in self._label_pos:
                    scored.append((float(ev.label_scores[self._label_pos[term]]), f"label {term}"))
                if term in self._cat_pos:
                    j = self._cat_pos[term]
                    by_mass = 0.0 if ev.category_mass is None else float(ev.category_mass[j])
                    scored.append((max(float(ev.category_scores[j]), by_mass), f"category {term}"))
                if term in self._coco and self._coco[term] in ev.objects:
                    scored.append((ev.objects[self._coco[term]], f"detected {term}"))
            rel, why = max(scored)
            out.append(TagAudit(tag, rel, rel < cut, f"{why} {rel:.2f}" if rel > 0 else f"no {why.split()[-1]} seen"))
        return out


_CONSUMER_AUDITOR: ConsumerAuditor | None = None


def consumer_auditor() -> ConsumerAuditor:
    global _CONSUMER_AUDITOR
    if _CONSUMER_AUDITOR is None:
        _CONSUMER_AUDITOR = ConsumerAuditor()
    return _CONSUMER_AUDITOR


def audit_user_tags(
    image, user_tags: Sequence[str] | str, *, tagger=None, flag_below: float | None = None
) -> list[TagAudit]:
    """Audit the tags a user typed for one image (a path, bytes or PIL image) with the tagger's model
    (the default ImageNet model through the consumer vocabulary, or a trained model folder loaded with
    `Tagger.load`). `flag_below` None: the fitted cut.

    >>> [(a.tag, a.flagged, a.judged) for a in audit_user_tags("cat.jpg", "cat, car, instagood")]
    [('cat', False, True), ('car', True, True), ('instagood', False, False)]
    """
    from autotag.ingest import ImageError
    from autotag.pipeline import Tagger, softmax

    user_tags = parse_user_tags(user_tags)
    if not user_tags:
        raise AutotagError('no user tags to audit: pass them like --user-tags "cat, beach, instagood"')
    tagger = tagger or Tagger.default()
    item = next(tagger.stream([image], decide=False))
    if item.error:
        raise ImageError(f"{item.source}: {item.error}")
    if tagger.model is not None:  # the model's own labels: visual head for the image, user-tag head for the tags
        estimator = tagger.model.estimator
        auditor = TagAuditor(tagger.model.labels, estimator.tag_grounding())
        cut = FLAG_BELOW if flag_below is None else flag_below
        return auditor.audit(estimator.predict_visual_proba(item.embedding[None])[0], user_tags, cut)
    return consumer_auditor().audit(softmax(item.logits[None])[0], user_tags, flag_below=flag_below)
