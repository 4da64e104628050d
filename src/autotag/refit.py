"""Learning from corrections: re-fit a trained model's per-tag thresholds from stored feedback.

People accept or reject the tags a model gave (the library keeps the score each tag had). For each
label with enough feedback, the new threshold is the one that scores best (F-beta, accepted tags
as positives, rejected ones as negatives) on that feedback; labels with too little feedback keep
their threshold. Only thresholds change, so scores stored under earlier versions stay comparable.

Feedback shows only what the model already proposed, so a refit can raise a threshold with
confidence but lowers one only down to the lowest accepted score it has seen. Tags people added
themselves carry no score and are counted but not used.

The result is a NEW model folder (a copy with a new thresholds.json and a refit.json report)
registered as the next version of the model in the library; the old folder and version stay.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autotag.modelfolder import ModelFolder
from autotag.types import AutotagError

THRESHOLD_RULE = "per-label"  # the decision rule (autotag.decide) that uses per-label thresholds


@dataclass
class TagChange:
    tag: str
    accepted: int
    rejected: int
    old_threshold: float
    new_threshold: float
    precision_before: float | None
    precision_after: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RefitReport:
    model: str
    old_version: int
    new_version: int | None  # None on a dry run
    new_path: str | None
    feedback_used: int
    feedback_skipped: int  # added tags (no score), tags not in the model, repeated judgements
    precision_before: float | None
    precision_after: float | None
    recall_after: float | None  # share of accepted tags the new thresholds still give
    rule_before: str | None = None  # the model's decision rule (config.json), None if it has none
    rule_after: str | None = None
    changes: list[TagChange] = field(default_factory=list)

    @property
    def thresholds_unused(self) -> bool:
        """True when the new version decides by a rule that ignores per-label thresholds."""
        return self.rule_after not in (None, THRESHOLD_RULE)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["changes"] = [c.to_dict() for c in self.changes]
        return out


# ------------------------------------------------------------------------------ thresholds.json
def read_thresholds(folder: str | Path) -> dict[str, float]:
    """label -> threshold of a model folder, checked as the model loader checks it."""
    model = ModelFolder(folder)
    labels = model.labels()
    values, _ = model.thresholds(labels)
    return dict(zip(labels, values.tolist(), strict=True))


# ------------------------------------------------------------------------------ the fit itself
def _precision(scores: np.ndarray, positive: np.ndarray, threshold: float) -> float | None:
    chosen = scores >= threshold
    return float(positive[chosen].mean()) if chosen.any() else None


def fit_threshold(scores: np.ndarray, positive: np.ndarray, old: float, beta: float = 1.0) -> float:
    """The threshold with the best F-beta on this feedback (ties: the one nearest `old`).

    Candidates are the old threshold and every feedback score, so the result always sits exactly
    on a seen score: the lowest accepted score kept, or just above a rejected one.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    if not positive.any():  # everything rejected: stop giving the tag, unless scores rise above all seen
        return float(np.nextafter(scores.max(), np.inf))
    candidates = np.unique(np.concatenate([scores, [old]]))
    candidates = candidates[candidates <= scores[positive].max()]
    best, best_key = old, None
    b2 = beta * beta
    for t in candidates:
        chosen = scores >= t
        tp = float((chosen & positive).sum())
        fp = float((chosen & ~positive).sum())
        fn = float((~chosen & positive).sum())
        f = (1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp) if tp else 0.0
        key = (round(f, 12), -abs(t - old))
        if best_key is None or key > best_key:
            best, best_key = float(t), key
    return best


# ------------------------------------------------------------------------------ model resolution
def _resolve(lib, model: str):  # -> StoredModel
    """A model registered in the library by name, or a model folder (registered on first refit)."""
    stored = lib.get_model(model)
    if stored is not None:
        return stored
    folder = Path(model).expanduser()
    if folder.is_dir():
        resolved = folder.resolve()
        for candidate in lib.list_models():
            if Path(candidate.path).resolve() == resolved:
                return lib.get_model(candidate.name)
        ModelFolder(folder).check()  # refuse what the model loader refuses before registering anything
        return lib.register_model(folder.name, str(resolved), {"registered_by": "refit"})
    known = sorted({m.name for m in lib.list_models()})
    raise AutotagError(
        f"no model {model!r} in the library and no such folder; "
        f"registered models: {', '.join(known) if known else 'none'}"
    )


def _feedback_for(lib, stored) -> list:
    """Feedback on predictions of any version of this model (stored under its name or a path)."""
    aliases = {stored.name}
    for version in lib.list_models(stored.name):
        aliases |= {version.path, str(Path(version.path).resolve())}
    items = []
    for alias in aliases:
        items.extend(lib.feedback(model=alias))
    return sorted(items, key=lambda f: f.id)


# ------------------------------------------------------------------------------ public
def refit_model(
    lib,
    model: str,
    *,
    beta: float = 1.0,
    min_feedback: int = 3,
    use_thresholds: bool = False,
    dry_run: bool = False,
) -> RefitReport:
    """Re-fit `model`'s thresholds from the feedback in `lib` and record the result as a new version.

    A model that decides by another rule (top-k, predicted count) ignores per-label thresholds;
    `use_thresholds` makes the new version decide by them (rule "per-label").
    """
    if beta <= 0:
        raise AutotagError(f"--beta must be positive, got {beta}")
    stored = _resolve(lib, model)
    folder = Path(stored.path)
    files = ModelFolder(folder)
    labels = files.check()
    old = read_thresholds(folder)
    rule_before = (files.config().get("decision") or {}).get("rule")
    rule_after = THRESHOLD_RULE if use_thresholds else rule_before

    latest: dict[tuple[int, str], Any] = {}
    skipped = 0
    for item in _feedback_for(lib, stored):
        if item.action == "added" or item.score is None or item.tag not in old:
            skipped += 1
            continue
        key = (item.image_id, item.tag)
        skipped += key in latest  # a later judgement of the same tag on the same image wins
        latest[key] = item
    if not latest:
        raise AutotagError(
            f"no usable feedback for model {stored.name!r}: accept or reject some of its tags first "
            "(POST /v1/images/{id}/feedback or the web page)"
        )

    tags = np.array([k[1] for k in latest])
    scores = np.array([f.score for f in latest.values()], dtype=np.float64)
    positive = np.array([f.action == "accepted" for f in latest.values()])
    new = dict(old)
    changes = []
    for tag in sorted(set(tags.tolist())):
        mask = tags == tag
        if mask.sum() >= min_feedback:
            new[tag] = fit_threshold(scores[mask], positive[mask], old[tag], beta)
        changes.append(
            TagChange(
                tag=tag,
                accepted=int(positive[mask].sum()),
                rejected=int((~positive[mask]).sum()),
                old_threshold=old[tag],
                new_threshold=new[tag],
                precision_before=_precision(scores[mask], positive[mask], old[tag]),
                precision_after=_precision(scores[mask], positive[mask], new[tag]),
            )
        )

    old_t = np.array([old[t] for t in tags])
    new_t = np.array([new[t] for t in tags])
    kept_before, kept_after = scores >= old_t, scores >= new_t
    report = RefitReport(
        model=stored.name,
        old_version=stored.version,
        new_version=None,
        new_path=None,
        feedback_used=len(latest),
        feedback_skipped=skipped,
        precision_before=float(positive[kept_before].mean()) if kept_before.any() else None,
        precision_after=float(positive[kept_after].mean()) if kept_after.any() else None,
        recall_after=float(kept_after[positive].mean()) if positive.any() else None,
        rule_before=rule_before,
        rule_after=rule_after,
        changes=changes,
    )
    if dry_run:
        return report

    version = max(m.version for m in lib.list_models(stored.name)) + 1
    target = folder.parent / f"{stored.name}-v{version}"
    if target.exists():
        raise AutotagError(f"{target} already exists; move it away and run refit again")
    # Build the new folder under a temporary name, then move it into place in one step.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=folder.parent))
    try:
        shutil.copytree(folder, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns("refit.json"))
        ModelFolder(staging).write_thresholds(labels, [new[label] for label in labels])
        if rule_after != rule_before:
            ModelFolder(staging).set_decision(rule=rule_after)
        report.new_version, report.new_path = version, str(target.resolve())
        (staging / "refit.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        registered = lib.register_model(
            stored.name, str(target.resolve()), {"refit_from_version": stored.version, **_summary(report)}
        )
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    if registered.version != version:  # another refit registered in between; keep numbering honest
        report.new_version = registered.version
    return report


def _summary(report: RefitReport) -> dict[str, Any]:
    return {
        "feedback_used": report.feedback_used,
        "precision_before": report.precision_before,
        "precision_after": report.precision_after,
        "recall_after": report.recall_after,
    }
