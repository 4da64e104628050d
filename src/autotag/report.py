"""The evaluation report folder: metrics.json, report.md and the plots a reader looks at first.

Plots describe the first run (model, rule) of the evaluation; the comparison table covers all runs.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autotag import metrics as M

if TYPE_CHECKING:
    from autotag.evaluate import EvalRun, Evaluation

CORRECT, MISSED, EXTRA = "#1a7f37", "#cf222e", "#bc4c00"  # green, red, orange; marks =, -, + as well


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf -> null, numpy -> python."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_per_class_f1(run: EvalRun, path: Path) -> None:
    plt = _plt()
    per_class = sorted(run.metrics["per_class"], key=lambda c: c["f1"], reverse=True)
    shown = per_class if len(per_class) <= 60 else per_class[:30] + per_class[-30:]
    fig, ax = plt.subplots(figsize=(max(6, 0.28 * len(shown) + 2), 4))
    ax.bar(range(len(shown)), [c["f1"] for c in shown], color="#4c72b0")
    ax.set_xticks(range(len(shown)), [c["label"] for c in shown], rotation=70, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1")
    title = f"Per-class F1, sorted ({run.model}, {run.rule})"
    ax.set_title(title + (" - best 30 and worst 30" if len(shown) < len(per_class) else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_pr_curves(run: EvalRun, y_true: np.ndarray, path: Path, n: int = 3) -> None:
    plt = _plt()
    per_class = [(j, c) for j, c in enumerate(run.metrics["per_class"]) if c["ap"] is not None]
    ranked = sorted(per_class, key=lambda jc: jc[1]["ap"], reverse=True)
    chosen = ranked[:n] + [jc for jc in ranked[-n:] if jc not in ranked[:n]]
    fig, ax = plt.subplots(figsize=(6, 5))
    for rank, (j, c) in enumerate(chosen):
        precision, recall, _ = M.precision_recall_curve(y_true[:, j], run.scores[:, j])
        style = "-" if rank < n else "--"
        ax.step(np.r_[0, recall], np.r_[1, precision], where="pre", linestyle=style,
                label=f"{c['label']} (AP {c['ap']:.2f})")  # fmt: skip
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("Precision-recall: best (solid) and worst (dashed) classes")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_label_counts(run: EvalRun, y_true: np.ndarray, path: Path) -> None:
    plt = _plt()
    true_n, pred_n = y_true.sum(1), run.y_pred.sum(1)
    top = int(max(true_n.max(initial=0), pred_n.max(initial=0)))
    bins = np.arange(top + 2)
    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.4
    ax.bar(bins[:-1] - width / 2, np.bincount(true_n, minlength=top + 1), width, label="true")
    ax.bar(bins[:-1] + width / 2, np.bincount(pred_n, minlength=top + 1), width, label="predicted")
    ax.set_xticks(bins[:-1])
    ax.set_xlabel("labels per image")
    ax.set_ylabel("images")
    ax.set_title(f"Label count: accuracy {run.metrics['count-accuracy']:.2f}, MAE {run.metrics['count-MAE']:.2f}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion(run: EvalRun, labels: list[str], path: Path) -> None:
    plt = _plt()
    cm = np.asarray(run.metrics["confusion"], dtype=np.float64)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(labels), 0.6 + 0.5 * len(labels)))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    if len(labels) <= 20:
        for i in range(len(labels)):
            for j in range(len(labels)):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")  # fmt: skip
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix (accuracy {run.metrics['accuracy']:.3f})")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_reliability(run: EvalRun, y_true: np.ndarray, single_label: bool, path: Path) -> float | None:
    """Reliability diagram of top-1 confidence (single-label) or of every (image, label) score."""
    scores = run.scores
    if scores.size == 0 or scores.min() < 0 or scores.max() > 1:
        return None
    if single_label:
        conf, hit = scores.max(1), y_true[np.arange(len(y_true)), scores.argmax(1)] == 1
        what = "top-1 confidence"
    else:
        conf, hit = scores.reshape(-1), y_true.reshape(-1) == 1
        what = "every (image, label) score"
    bins = M.reliability_bins(conf, hit, 10)
    ece = M.expected_calibration_error(conf, hit, 10)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    centers = (bins["edges"][:-1] + bins["edges"][1:]) / 2
    filled = bins["count"] > 0
    ax.bar(centers[filled], bins["accuracy"][filled], width=0.095, color="#4c72b0", label="observed frequency")
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.set_xlabel(f"score ({what})")
    ax.set_ylabel("fraction correct")
    ax.set_title(f"Reliability (ECE {ece:.3f})")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return ece


def plot_gallery(run: EvalRun, evaluation: Evaluation, path: Path, n: int = 16, seed: int = 0) -> None:
    """A grid of random test images with their tags: = correct (green), - missed (red), + extra (orange)."""
    from PIL import Image

    plt = _plt()
    records = evaluation.dataset.records
    labels = evaluation.dataset.labels
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(records), size=min(n, len(records)), replace=False)
    cols = min(4, len(picks))
    rows = math.ceil(len(picks) / cols)
    max_lines = 7
    height = 4.7 * rows + 0.5
    fig = plt.figure(figsize=(3.0 * cols, height))
    grid = fig.add_gridspec(2 * rows, cols, height_ratios=[3.0, 1.5] * rows, hspace=0.12, wspace=0.08,
                            top=1 - 0.8 / height, bottom=0.01, left=0.01, right=0.99)  # fmt: skip
    for cell, i in enumerate(picks):
        r, c = divmod(cell, cols)
        ax, text_ax = fig.add_subplot(grid[2 * r, c]), fig.add_subplot(grid[2 * r + 1, c])
        ax.axis("off")
        text_ax.axis("off")
        try:
            with Image.open(records[i].source) as im:
                im.thumbnail((256, 256))
                ax.imshow(np.asarray(im.convert("RGB")), interpolation="nearest")
        except OSError:
            ax.text(0.5, 0.5, "unreadable", ha="center", transform=ax.transAxes)
        ax.set_title(Path(records[i].source).name, fontsize=8)
        true_set = set(np.flatnonzero(evaluation.y_true[i]))
        pred_set = set(np.flatnonzero(run.y_pred[i]))
        lines = [(f"= {labels[j]}", CORRECT) for j in sorted(true_set & pred_set)]
        lines += [(f"- {labels[j]}", MISSED) for j in sorted(true_set - pred_set)]
        lines += [(f"+ {labels[j]} {run.scores[i, j]:.2f}", EXTRA) for j in sorted(pred_set - true_set)]
        if len(lines) > max_lines:
            lines = lines[: max_lines - 1] + [(f"... {len(lines) - max_lines + 1} more", "black")]
        for k, (text, color) in enumerate(lines):
            text_ax.text(
                0.02, 1.0 - k / max_lines, text, color=color, fontsize=9, va="top", transform=text_ax.transAxes
            )
    fig.suptitle(f"{run.model} / {run.rule}:  = correct (green)   - missed (red)   + extra (orange)", fontsize=10,
                 y=1 - 0.2 / height)  # fmt: skip
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _md_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        out.append("| " + " | ".join("" if row[c] is None else str(row[c]) for c in cols) + " |")
    return "\n".join(out)


def write_report(evaluation: Evaluation, out_dir: str | Path, *, gallery_size: int = 16, seed: int = 0) -> Path:
    """Write metrics.json, report.md and the PNG plots into out_dir; returns out_dir."""
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    if not evaluation.runs:
        raise ValueError("nothing to report: the evaluation has no runs")
    run = evaluation.runs[0]
    single = evaluation.dataset.single_label
    plots: dict[str, str] = {}
    plot_per_class_f1(run, out / "per_class_f1.png")
    plots["Per-class F1"] = "per_class_f1.png"
    if run.scores is not None and any(c["ap"] is not None for c in run.metrics["per_class"]):
        plot_pr_curves(run, evaluation.y_true, out / "pr_curves.png")
        plots["Precision-recall curves"] = "pr_curves.png"
    if single:
        plot_confusion(run, evaluation.dataset.labels, out / "confusion.png")
        plots["Confusion matrix"] = "confusion.png"
    else:
        plot_label_counts(run, evaluation.y_true, out / "label_counts.png")
        plots["Labels per image"] = "label_counts.png"
    if plot_reliability(run, evaluation.y_true, single, out / "reliability.png") is not None:
        plots["Reliability diagram"] = "reliability.png"
    plot_gallery(run, evaluation, out / "gallery.png", gallery_size, seed)
    plots["Example gallery"] = "gallery.png"

    table = evaluation.table()
    payload = {
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **evaluation.info,
        "labels": evaluation.dataset.labels,
        "runs": [{"model": r.model, "rule": r.rule, "notes": r.notes, "metrics": r.metrics} for r in evaluation.runs],
        "errors": evaluation.errors,
    }
    (out / "metrics.json").write_text(json.dumps(_clean(payload), indent=2) + "\n")

    info = evaluation.info
    lines = [
        f"# Evaluation: {info.get('dataset', evaluation.dataset.name)}",
        "",
        f"{info.get('n_evaluated')} images evaluated ({info.get('n_failed', 0)} unreadable), "
        f"{len(evaluation.dataset.labels)} labels, {payload['created']}.",
        "",
        "## Comparison",
        "",
        _md_table(table),
        "",
        "C-P/C-R: per-class precision/recall averaged over classes; C-F1 their harmonic mean; O-*: the same over all "
        "(image, label) decisions; H-F1: harmonic mean of C-F1 and O-F1; mAP: mean average precision of the scores.",
        "",
    ]
    notes = dict.fromkeys(f"- {r.model}: {note}" for r in evaluation.runs for note in r.notes)  # once each
    lines += [*notes, *(f"- {s}" for s in evaluation.info.get("skipped", []))]
    lines += ["", f"## Per class ({run.model}, {run.rule})", ""]
    per_class = [
        {k: (round(v, 4) if isinstance(v, float) else v) for k, v in c.items()}
        for c in sorted(run.metrics["per_class"], key=lambda c: -c["f1"])
    ]
    lines += [_md_table(per_class), ""]
    for title, file in plots.items():
        lines += [f"## {title}", "", f"![{title}]({file})", ""]
    if evaluation.errors:
        lines += ["## Unreadable images", ""]
        lines += [f"- {src}: {why}" for src, why in list(evaluation.errors.items())[:50]]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return out
