"""The real default model on real photos, through the Python API and the CLI."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autotag import Tagger
from autotag.pipeline import TagOptions
from autotag.taxonomy.imagenet import imagenet_hierarchy
from autotag.types import AutotagError

AUTOTAG = str(Path(sys.executable).with_name("autotag"))


@pytest.fixture(scope="module")
def tagger() -> Tagger:
    return Tagger.default()


def _names(tags, kind=None, n=None):
    return [t.name.lower() for t in tags if kind is None or t.kind == kind][:n]


def test_real_photos_get_sensible_tags(tagger, photos):
    cat = _names(tagger.tag(photos["chelsea"]), "label", 5)
    assert any(w in name for name in cat for w in ("cat", "tabby", "mau", "lynx")), cat
    coffee = _names(tagger.tag(photos["coffee"]))
    assert any("coffee" in n or "cup" in n or "espresso" in n for n in coffee), coffee
    rocket = _names(tagger.tag(photos["rocket"]))  # the fitted decisions may not be sure of it: then nothing
    plausible = ("rocket", "missile", "space shuttle", "vehicle", "aircraft", "sky", "space")
    assert all(n in plausible for n in rocket), rocket


def test_ancestor_scores_are_probability_mass_of_children(tagger, photos):
    """The raw ImageNet tagger kept for side-by-side benchmarks (imagenet_tags) sums its ancestors."""
    from autotag.pipeline import imagenet_tags, softmax

    logits = next(tagger.stream([photos["chelsea"]], decide=False)).logits
    tags = imagenet_tags(softmax(logits), TagOptions(top_k=10, threshold=0.0))
    by_name = {t.name: t for t in tags}
    assert "mammal" in by_name or "animal" in by_name, list(by_name)
    h = imagenet_hierarchy()
    leaf_index = {cid: i for i, cid in enumerate(h.class_ids)}
    for t in tags:
        if t.kind != "ancestor":
            continue
        col = h.ancestor_ids.index(t.id)
        children = [c for c in tags if c.kind == "leaf" and h.ancestor_matrix[leaf_index[c.id], col]]
        if children:
            assert t.score >= max(c.score for c in children) - 1e-6
            assert t.score >= sum(c.score for c in children) - 1e-5  # a sum over all classes, not a max
    # the index-run sums equal the product with the 0/1 ancestor matrix, ancestor by ancestor
    probs = np.random.default_rng(0).dirichlet(np.full(1000, 0.05), size=16).astype(np.float32)
    np.testing.assert_allclose(h.ancestor_scores(probs), probs @ h.ancestor_matrix, atol=1e-6)


def test_inputs_path_bytes_and_pil_agree(tagger, photos):
    data = photos["coffee"].read_bytes()
    a = tagger.tag(photos["coffee"])
    b = tagger.tag(data)
    assert [t.name for t in a] == [t.name for t in b]
    c = tagger.tag(Image.open(io.BytesIO(data)))
    assert c[0].name == a[0].name


def test_embed_shape_and_order(tagger, photos):
    emb = tagger.embed([photos["chelsea"], photos["coffee"], photos["chelsea"]])
    assert emb.shape == (3, 1280) and emb.dtype == np.float32
    np.testing.assert_allclose(emb[0], emb[2], rtol=1e-5, atol=1e-5)
    assert not np.allclose(emb[0], emb[1])


def test_onnx_agrees_with_pytorch(encoder, photos):
    import torch

    from autotag.encoders.efficientnet_lite import build_torch_model, torch_forward

    im = Image.open(photos["chelsea"]).convert("RGB")
    x = encoder.preprocess(im)[None]
    logits, emb = encoder.run(x)
    with torch.no_grad():
        ref_logits, ref_emb = torch_forward(build_torch_model("efficientnet_lite0"), torch.from_numpy(x))
    assert np.abs(logits - ref_logits.numpy()).max() < 1e-3
    assert np.abs(emb - ref_emb.numpy()).max() < 1e-3


def test_second_process_reuses_the_export_without_torch(encoder):
    before = encoder.onnx_path.stat().st_mtime_ns
    code = (
        "import sys; from autotag.encoders import create_encoder; e = create_encoder('efficientnet_lite0');"
        "import numpy as np; e.run(np.zeros((1, 3, 224, 224), np.float32)); print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True
    )
    assert out.stdout.strip() == "False"
    assert encoder.onnx_path.stat().st_mtime_ns == before


def test_unknown_encoder_lists_valid_names():
    from autotag.encoders import create_encoder

    with pytest.raises(AutotagError, match="efficientnet_lite0"):
        create_encoder("resnet9000")


def _bad_files(folder: Path, photos) -> dict[str, Path]:
    folder.mkdir(exist_ok=True)
    jpeg = photos["chelsea"].read_bytes()
    files = {
        "empty": (folder / "empty.jpg", b""),
        "truncated": (folder / "truncated.jpg", jpeg[: len(jpeg) // 3]),
        "corrupt": (folder / "corrupt.png", b"\x89PNG\r\n\x1a\n" + os.urandom(200)),
        "not_image": (folder / "notes.jpg", b"<html><body>not an image</body></html>"),
    }
    for path, data in files.values():
        path.write_bytes(data)
    out = {k: p for k, (p, _) in files.items()}
    ico = folder / "icon.ico"
    Image.new("RGB", (32, 32), "red").save(ico)
    out["unsupported"] = ico
    big = folder / "bomb.png"
    Image.new("1", (12000, 10000)).save(big)  # 120 MP of zeros: a few KB on disk
    out["too_big"] = big
    return out


def test_batch_with_bad_files_tags_the_good_ones(tagger, photos, tmp_path):
    bad = _bad_files(tmp_path / "bad", photos)
    sources = [photos["chelsea"], *bad.values(), photos["coffee"]]
    preds = list(tagger.tag_many(sources))
    assert [p.path for p in preds] == [str(s) for s in sources]
    assert preds[0].ok and preds[-1].ok and preds[0].tags and preds[-1].tags
    errors = {name: p.error for name, p in zip(bad, preds[1:-1], strict=True)}
    assert all(errors.values()), errors
    assert "empty" in errors["empty"]
    assert "truncated" in errors["truncated"] or "corrupt" in errors["truncated"]
    assert "not an image" in errors["not_image"]
    assert "unsupported" in errors["unsupported"]
    assert "limit" in errors["too_big"] and "MP" in errors["too_big"]
    assert all("\n" not in e for e in errors.values())


def test_cli_formats_and_exit_code(photos, tmp_path):
    bad = _bad_files(tmp_path / "bad", photos)
    args = [AUTOTAG, "tag", str(photos["chelsea"]), str(bad["empty"]), str(photos["rocket"])]
    out = subprocess.run([*args, "--format", "jsonl"], capture_output=True, text=True)
    assert out.returncode == 1
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["error"] is None for r in rows] == [True, False, True]
    assert rows[0]["tags"] and rows[0]["content_hash"]
    err_lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert any("empty.jpg" in line and "empty file" in line for line in err_lines)
    out = subprocess.run([*args, "--format", "csv"], capture_output=True, text=True)
    table = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(table) == 3 and table[1]["error"] and "cat" in table[0]["tags"].split(";")
    assert table[0]["colors"] and table[0]["orientation"] == "landscape" and table[0]["style"] == "photo"
    out = subprocess.run(
        [*args, "--format", "json", "--no-categories", "--top-k", "2"], capture_output=True, text=True
    )
    data = json.loads(out.stdout)
    assert all(t["kind"] in ("label", "object") for t in data[0]["tags"]) and len(data[0]["tags"]) <= 2
    out = subprocess.run([*args, "--format", "table"], capture_output=True, text=True)
    assert "chelsea.jpg" in out.stdout and "error" in out.stdout


def test_cli_reads_folders_globs_and_stdin(photos, tmp_path):
    folder = photos["chelsea"].parent
    out = subprocess.run(
        [AUTOTAG, "tag", "-", "-f", "jsonl"], input=f"{photos['coffee']}\n", capture_output=True, text=True
    )
    assert out.returncode == 0 and json.loads(out.stdout)["path"] == str(photos["coffee"])
    out = subprocess.run(
        [AUTOTAG, "tag", str(folder / "c*.jpg"), "-f", "jsonl"], capture_output=True, text=True
    )
    paths = {json.loads(line)["path"] for line in out.stdout.splitlines()}
    assert str(photos["chelsea"]) in paths and str(photos["rocket"]) not in paths
    out = subprocess.run([AUTOTAG, "tag", str(tmp_path / "nope.jpg")], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "no such file" in out.stderr


def test_every_command_help_has_an_example():
    from typer.main import get_command

    from autotag.cli import app

    for name, cmd in get_command(app).commands.items():
        assert "xample" in (cmd.help or ""), f"autotag {name} --help has no example"
