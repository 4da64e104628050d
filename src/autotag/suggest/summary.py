"""Everything suggested for one tagged image at once (what the HTTP API answers next to its tags):
hashtags with abstention, whether the image is out of domain, and which user-typed tags look wrong."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from autotag.pipeline import Item, Tagger, scene_words, softmax
from autotag.types import AutotagError, Tag

log = logging.getLogger("autotag.suggest")


@dataclass
class Suggestions:
    hashtags: list[Tag] = field(default_factory=list)
    flagged_user_tags: list[dict[str, Any]] = field(default_factory=list)  # tag, reason, score
    # user tags the model has no concept for ("sunset"): neither passed nor flagged, it cannot judge them
    cannot_judge_user_tags: list[str] = field(default_factory=list)
    out_of_domain: bool | None = None
    ood_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "hashtags": [t.to_dict() for t in self.hashtags],
            "flagged_user_tags": self.flagged_user_tags,
            "cannot_judge_user_tags": self.cannot_judge_user_tags,
            "out_of_domain": self.out_of_domain,
            "ood_score": self.ood_score,
        }


def suggestions_for(tagger: Tagger, item: Item, user_tags: Sequence[str] = ()) -> Suggestions:
    """Hashtags and the user-tag audit read ImageNet probabilities: the default model only (empty
    otherwise). They are extras: if they fail, the log says why and the answer goes on without them."""
    if tagger.model is not None or tagger.encoder.spec.label_set != "imagenet-1k" or item.logits is None:
        return Suggestions()
    try:
        return _imagenet_suggestions(item.logits[None], user_tags, item.detections or (),
                                     scene_words(item, tagger.encoder.spec.name),
                                     item.style.evidence() if item.style else {})  # fmt: skip
    except AutotagError:
        raise
    except Exception:  # noqa: BLE001 - an optional feature never fails the request
        log.exception("hashtag suggestion / user-tag audit failed; answering without them")
        return Suggestions()


def _imagenet_suggestions(logits: Any, user_tags: Sequence[str], detections: Sequence[Any] = (),
                          scenes: dict[str, float] | None = None,
                          styles: dict[str, float] | None = None) -> Suggestions:  # fmt: skip
    from autotag.suggest.audit import consumer_auditor
    from autotag.suggest.hashtags import default_suggester

    probs = softmax(logits)
    suggester = default_suggester()
    scores = suggester.ood_scores(logits)
    out = Suggestions(
        hashtags=suggester.suggest(probs, logits=logits, scenes=[scenes or {}], styles=[styles or {}])[0],
        out_of_domain=bool(suggester.out_of_domain(logits)[0]),
        ood_score=round(float(scores[0]), 4) if scores is not None else None,
    )
    if user_tags:
        # the same auditor as `autotag audit`: the consumer vocabulary, the detector's objects included
        audits = consumer_auditor().audit(probs[0], list(user_tags), detections)
        out.flagged_user_tags = [
            {"tag": a.tag, "reason": a.evidence, "score": round(float(a.relevance), 4)} for a in audits if a.flagged
        ]
        out.cannot_judge_user_tags = [a.tag for a in audits if not a.judged]
    return out
