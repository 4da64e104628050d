"""The real-photo benchmark: its manifest keeps its promises, the build script and the reader work."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from PIL import Image

from autotag.data import load_dataset
from autotag.types import AutotagError

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "bench" / "realphotos" / "manifest.yaml"
sys.path.insert(0, str(ROOT / "scripts"))
import build_realphotos  # noqa: E402

PALETTE = {"red", "orange", "yellow", "green", "teal", "blue", "purple", "pink", "brown", "beige", "white", "grey"}
PALETTE |= {"black", "black and white"}
STYLES = {"abstract", "illustration", "3d render", "pattern"}
KEPT_FOR_INDEPENDENT_EVALUATION = ("mate-backgrounds", "plasma-workspace-wallpapers", "ukui-wallpapers", "insightface")


@pytest.fixture(scope="module")
def pictures() -> list[dict]:
    return build_realphotos.read_manifest(MANIFEST)


def test_manifest_fields_are_complete_and_consistent(pictures):
    assert len({p["id"] for p in pictures}) == len(pictures)
    for p in pictures:
        where = p["id"]
        assert p["split"] in ("fit", "test"), where
        assert p["kind"] in ("photo", "art"), where
        assert (p.get("style") in STYLES) if p["kind"] == "art" else "style" not in p, where
        assert p["tags"], where
        assert not set(p["tags"]) & set(p["wrong"]), where
        assert str(p["people"]) in ("0", "1", "2", "3+"), where
        assert 1 <= len(p["colors"]) <= 3 and set(p["colors"]) <= PALETTE, where
        if p["objects"] and "person" in p["objects"]:
            assert str(p["people"]) != "0", where
        assert p["source"].split(":")[0] in ("deb", "skimage", "sklearn", "matplotlib"), where
        assert not any(name in p["source"] for name in KEPT_FOR_INDEPENDENT_EVALUATION), where


def test_manifest_sizes_and_split_balance(pictures):
    kinds = Counter(p["kind"] for p in pictures)
    assert kinds["photo"] >= 40 and kinds["art"] >= 20
    by_split_kind = Counter((p["split"], p["kind"]) for p in pictures)
    for kind in ("photo", "art"):
        assert abs(by_split_kind["fit", kind] - by_split_kind["test", kind]) <= 2
    # every Debian package with two or more pictures has pictures in both halves
    packages = Counter(p["source"].split(":")[1] for p in pictures if p["source"].startswith("deb:"))
    for package, n in packages.items():
        splits = {p["split"] for p in pictures if p["source"].startswith(f"deb:{package}:")}
        assert n < 2 or splits == {"fit", "test"}, package


def test_category_parents_follow_their_children(pictures):
    """A dog is an animal, a fruit is food: the labelling rule the README states."""
    parents = {"dog": "animal", "cat": "animal", "bird": "animal", "insect": "animal", "fish": "animal"}
    parents |= {"fruit": "food", "vegetable": "food", "car": "vehicle", "flower": "plant", "sunset": "sky"}
    for p in pictures:
        for child, parent in parents.items():
            if child in p["tags"]:
                assert parent in p["tags"], (p["id"], child)


def _write_manifest(path: Path, entries: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"pictures": entries}, sort_keys=False))
    return path


def test_build_then_read_round_trip(tmp_path, capsys):
    cutout = tmp_path / "pkg" / "stamp.png"
    cutout.parent.mkdir()
    rgba = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
    rgba.paste((200, 0, 0, 255), (5, 0, 15, 10))
    rgba.save(cutout)
    base = {"kind": "photo", "wrong": ["animal"], "people": 0, "objects": [], "colors": ["white", "red"]}
    entries = [
        {"id": "cut", "source": f"deb:some-package:{cutout}", "split": "fit", "tags": ["box"], **base},
        {"id": "gone", "source": f"deb:pkg:{tmp_path / 'missing.jpg'}", "split": "test", "tags": ["x"], **base},
    ]
    manifest = _write_manifest(tmp_path / "manifest.yaml", entries)
    out = tmp_path / "built"
    rc = build_realphotos.main(["--manifest", str(manifest), "--out", str(out), "--no-install"])
    assert rc == 1  # the missing file is a problem, one line naming it; the rest is built
    err = capsys.readouterr().err
    assert "gone:" in err and "not found" in err and len(err.strip().splitlines()) == 1
    flat = Image.open(out / "cut.png")
    assert flat.mode == "RGB" and flat.getpixel((0, 0)) == (255, 255, 255) and flat.getpixel((10, 5)) == (200, 0, 0)

    ds = load_dataset(f"realphotos:{out}")
    assert [r.labels for r in ds.records] == [["box"]] and ds.records[0].split == "fit"
    side = ds.info["pictures"][ds.records[0].source]
    assert side["id"] == "cut" and side["wrong"] == ["animal"] and side["people"] == "0"


def test_build_reuses_pictures_and_rewrites_labels(tmp_path):
    src = tmp_path / "photo.jpg"
    Image.new("RGB", (8, 8), (0, 90, 0)).save(src)
    entry = {"id": "p", "source": f"deb:pkg:{src}", "split": "fit", "kind": "photo", "tags": ["grass"]}
    entry |= {"wrong": [], "people": 0, "objects": [], "colors": ["green"]}
    manifest = _write_manifest(tmp_path / "m.yaml", [entry])
    out = tmp_path / "o"
    assert build_realphotos.main(["--manifest", str(manifest), "--out", str(out), "--no-install"]) == 0
    assert (out / "p.jpg").read_bytes() == src.read_bytes()  # raster files are copied byte for byte
    _write_manifest(manifest, [entry | {"tags": ["lawn", "grass"]}])
    assert build_realphotos.main(["--manifest", str(manifest), "--out", str(out), "--no-install"]) == 0
    assert load_dataset(f"realphotos:{out}").records[0].labels == ["lawn", "grass"]
    assert build_realphotos.main(["--manifest", str(manifest), "--out", str(out), "--check"]) == 0


def test_reader_without_a_build_is_one_clear_line(tmp_path):
    with pytest.raises(AutotagError, match="make realphotos"):
        load_dataset(f"realphotos:{tmp_path}")


def test_shown_tags_evaluation_groups_by_split_and_kind():
    from autotag.data import Dataset
    from autotag.evaluate import shown_tags_evaluation
    from autotag.types import ImageRecord

    records = [
        ImageRecord("a.jpg", ["cat", "animal"], [], "fit"),
        ImageRecord("b.jpg", ["leaf", "plant"], [], "test"),
        ImageRecord("c.png", ["abstract"], [], "test"),
    ]
    pictures = {
        "a.jpg": {"kind": "photo", "wrong": ["dog"]},
        "b.jpg": {"kind": "photo", "wrong": ["animal"]},
        "c.png": {"kind": "art", "wrong": ["animal"]},
    }
    ds = Dataset(records, ["abstract", "animal", "cat", "leaf", "plant"], "t", info={"pictures": pictures})
    shown = {"a.jpg": ["cat"], "b.jpg": ["animal", "leaf"], "c.png": []}
    r = shown_tags_evaluation(ds, shown, allowed=["cat", "animal", "leaf"])
    assert set(r) == {"all", "fit", "test", "fit/photo", "test/photo", "test/art"}
    assert r["test/photo"]["wrong-rate"] == 0.5 and r["test/photo"]["hit@5"] == 1
    assert r["test/art"]["coverage"] == 0 and r["fit"]["precision"] == 1
    assert r["all"]["counts"] == {"pictures": 3, "shown": 3, "right": 2, "wrong": 1, "other": 0, "jargon": 0,
                                  "hits": 2, "covered": 2}  # fmt: skip
    with pytest.raises(AutotagError, match="no shown tags for 1 of 3"):
        shown_tags_evaluation(ds, {"a.jpg": [], "b.jpg": []})


def test_scene_training_pictures_are_no_benchmark_picture_and_are_pinned(pictures, tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    import train_scenes

    extra = yaml.safe_load(train_scenes.EXTRA.read_text())["pictures"]
    benchmark = {p["source"] for p in pictures}
    sources = [row["source"] for row in extra]
    assert not set(sources) & benchmark  # a TEST picture is never trained on; a FIT one is already a row
    assert not [s for s in sources if any(k in s for k in KEPT_FOR_INDEPENDENT_EVALUATION)]
    assert {s.split(":", 1)[0] for s in sources} <= {"gcompris", "deb", "pypi"}
    assert all("==" in s.split(":")[1] for s in sources if s.startswith("pypi:"))  # wheels pinned
    one = tmp_path / "extra.yaml"
    one.write_text(yaml.safe_dump({"pictures": [{"source": pictures[0]["source"], "tags": []}]}))
    with pytest.raises(SystemExit, match="real-photo benchmark"):
        train_scenes.read_extra(one, train_scenes.manifest_sources())
