"""Dataset readers on small files written in each official format, and the FashionMosaic generator."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autotag.data import FASHION_MNIST_CLASSES, load_dataset, read_fashion_mnist, write_fashion_mosaic
from autotag.data.mosaic import (
    CLASS_WORDS,
    UNRELATED_WORDS,
    MosaicConfig,
    generate_split,
    user_tag_vocabulary,
)
from autotag.types import AutotagError


def _png(path: Path, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value, value, value)).save(path)
    return path


def test_manifest_csv_and_jsonl(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "sub" / "b.png")
    (tmp_path / "data.csv").write_text(
        "path,labels,user_tags,split\na.png,cat|dog,pet;cute,train\nsub/b.png,dog,,test\n"
    )
    ds = load_dataset(f"manifest:{tmp_path / 'data.csv'}")
    assert ds.labels == ["cat", "dog"]
    assert ds.records[0].source == str(tmp_path / "a.png")
    assert ds.records[0].user_tags == ["pet", "cute"]
    np.testing.assert_array_equal(ds.label_matrix(), [[1, 1], [0, 1]])
    np.testing.assert_array_equal(ds.label_matrix(["dog", "bird"]), [[1, 0], [1, 0]])
    assert len(ds.split("test")) == 1 and ds.split("test").labels == ["cat", "dog"]
    with pytest.raises(AutotagError, match="splits present: train, test"):
        ds.split("val")

    rows = [
        {"path": "a.png", "labels": ["z", "y"], "user_tags": ["t"]},
        {"path": str(tmp_path / "sub/b.png")},
    ]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "labels.txt").write_text("z\ny\nx\n")  # fixes the column order
    ds = load_dataset(str(tmp_path / "data.jsonl"))  # a plain path means manifest
    assert ds.labels == ["z", "y", "x"]
    assert ds.records[1].labels == [] and ds.records[1].split is None
    np.testing.assert_array_equal(ds.label_matrix(), [[1, 1, 0], [0, 0, 0]])


def test_manifest_errors_are_one_clear_line(tmp_path):
    with pytest.raises(AutotagError, match="manifest not found"):
        load_dataset(f"manifest:{tmp_path / 'nope.csv'}")
    (tmp_path / "bad.jsonl").write_text('{"path": "a.png"}\n{oops\n')
    with pytest.raises(AutotagError, match="bad.jsonl:2: not valid JSON"):
        load_dataset(str(tmp_path / "bad.jsonl"))
    (tmp_path / "nohdr.csv").write_text("file,labels\na.png,x\n")
    with pytest.raises(AutotagError, match="'path' column"):
        load_dataset(str(tmp_path / "nohdr.csv"))
    with pytest.raises(AutotagError, match="unknown dataset 'weird:thing'.*fashion-mnist"):
        load_dataset("weird:thing")


def test_folder_per_class_with_and_without_splits(tmp_path):
    for cls in ("cat", "dog"):
        for i in range(2):
            _png(tmp_path / "flat" / cls / f"{i}.png")
            _png(tmp_path / "split" / ("train" if i == 0 else "test") / cls / f"{i}.jpg")
    (tmp_path / "flat" / "cat" / "notes.txt").write_text("not an image")
    flat = load_dataset(f"folder:{tmp_path / 'flat'}")
    assert len(flat) == 4 and flat.labels == ["cat", "dog"] and flat.single_label
    np.testing.assert_array_equal(flat.label_indices(), [0, 0, 1, 1])
    split = load_dataset(f"folder:{tmp_path / 'split'}")
    assert sorted(split.splits()) == ["test", "train"] and len(split.split("train")) == 2
    with pytest.raises(AutotagError, match="folder dataset not found"):
        load_dataset(f"folder:{tmp_path / 'missing'}")


def test_coco_instances(tmp_path):
    (tmp_path / "val2017").mkdir()
    ann = {
        "images": [{"id": 1, "file_name": "000001.jpg"}, {"id": 2, "file_name": "000002.jpg"},
                   {"id": 3, "file_name": "000003.jpg"}],
        "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
        "annotations": [{"id": 10, "image_id": 1, "category_id": 18, "bbox": [0, 0, 1, 1]},
                        {"id": 11, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]},
                        {"id": 12, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]},
                        {"id": 13, "image_id": 2, "category_id": 3, "bbox": [0, 0, 1, 1]}],
    }  # fmt: skip
    (tmp_path / "annotations").mkdir()
    path = tmp_path / "annotations" / "instances_val2017.json"
    path.write_text(json.dumps(ann))
    ds = load_dataset(f"coco:{path}")
    assert ds.labels == ["person", "car", "dog"]  # category id order
    assert ds.records[0].labels == ["person", "dog"] and ds.records[0].split == "val"
    assert ds.records[0].source == str(tmp_path / "val2017" / "000001.jpg")
    assert ds.records[2].labels == []  # an image without annotations is kept with no labels
    other = load_dataset(f"coco:{path}:{tmp_path / 'imgs'}")
    assert other.records[1].source == str(tmp_path / "imgs" / "000002.jpg")
    with pytest.raises(AutotagError, match="COCO annotations not found"):
        load_dataset(f"coco:{tmp_path / 'x.json'}")


def _write_nus_wide(root: Path, with_tags: bool = True) -> None:
    concepts = ["animal", "sky", "water"]
    (root / "ConceptsList").mkdir(parents=True)
    (root / "ConceptsList" / "Concepts81.txt").write_text("\n".join(concepts) + "\n")
    lists = {
        "Train": [
            "C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg",
            "C:\\ImageData\\Flickr\\sky\\0002_1.jpg",
        ],
        "Test": ["C:\\ImageData\\Flickr\\water\\0003_7.jpg"],
    }
    truth = {"Train": {"animal": [1, 0], "sky": [0, 1], "water": [0, 1]}, "Test": {"animal": [0], "sky": [0],
             "water": [1]}}  # fmt: skip
    (root / "ImageList").mkdir()
    (root / "Groundtruth" / "TrainTestLabels").mkdir(parents=True)
    for cap, paths in lists.items():
        (root / "ImageList" / f"{cap}Imagelist.txt").write_text("\r\n".join(paths) + "\r\n")
        for concept, values in truth[cap].items():
            gt = root / "Groundtruth" / "TrainTestLabels" / f"Labels_{concept}_{cap}.txt"
            gt.write_text("".join(f"{v} \n" for v in values))
    if with_tags:
        (root / "NUS_WID_Tags").mkdir()
        (root / "NUS_WID_Tags" / "TagList1k.txt").write_text("dog\nclouds\nblue\nsea\n")
        (root / "NUS_WID_Tags" / "Train_Tags1k.dat").write_text("1\t0\t0\t0\n0\t1\t1\t0\n")
        (root / "NUS_WID_Tags" / "Test_Tags1k.dat").write_text("0\t0\t1\t1\n")
    (root / "Flickr").mkdir()


def test_nus_wide_release_layout(tmp_path):
    _write_nus_wide(tmp_path / "nus")
    ds = load_dataset(f"nus-wide:{tmp_path / 'nus'}")
    assert ds.labels == ["animal", "sky", "water"]
    assert [r.split for r in ds.records] == ["train", "train", "test"]
    assert ds.records[0].source == str(tmp_path / "nus" / "Flickr" / "actor" / "0001_2124494179.jpg")
    assert ds.records[1].labels == ["sky", "water"] and ds.records[1].user_tags == ["clouds", "blue"]
    np.testing.assert_array_equal(ds.split("test").label_matrix(), [[0, 0, 1]])
    (tmp_path / "nus" / "Groundtruth" / "TrainTestLabels" / "Labels_sky_Test.txt").unlink()
    with pytest.raises(AutotagError, match="NUS-WIDE ground truth not found.*Labels_sky_Test.txt"):
        load_dataset(f"nus-wide:{tmp_path / 'nus'}")


def test_nus_wide_without_tags_and_missing_lists(tmp_path):
    _write_nus_wide(tmp_path / "nus", with_tags=False)
    ds = load_dataset(f"nus-wide:{tmp_path / 'nus'}")
    assert all(r.user_tags == [] for r in ds.records)
    (tmp_path / "nus" / "ImageList" / "TestImagelist.txt").unlink()
    with pytest.raises(AutotagError, match="test image list not found"):
        load_dataset(f"nus-wide:{tmp_path / 'nus'}")


def test_danbooru_keeps_top_n_general_tags(tmp_path):
    posts = [
        {
            "id": 1001,
            "file_ext": "png",
            "tag_string": "1girl solo smile naruto",
            "tag_string_general": "1girl solo smile",
            "tag_string_character": "uzumaki_naruto",
            "tag_string_copyright": "naruto",
            "tag_string_artist": "someone",
        },
        {
            "id": 2,
            "file_ext": "jpg",
            "tag_string_general": "1girl smile long_hair",
            "tag_string_character": "",
        },
        {"id": 3, "file_ext": "jpg", "tag_string_general": "1girl solo", "tag_string_copyright": "original"},
        {
            "id": 4,
            "path": "custom/4.webp",
            "tags": [{"name": "1girl", "category": "0"}, {"name": "miku", "category": "4"}],
        },
    ]
    path = tmp_path / "posts.jsonl"
    path.write_text("\n".join(json.dumps(p) for p in posts) + "\n")
    ds = load_dataset(f"danbooru:{path}", top_n=3)
    assert ds.labels == ["1girl", "smile", "solo"]  # by frequency, ties by name; long_hair dropped
    assert ds.records[0].labels == ["1girl", "smile", "solo"]
    assert ds.records[0].user_tags == ["uzumaki_naruto", "naruto"]
    assert ds.records[0].source == str(tmp_path / "0001" / "1001.png")
    assert ds.records[1].labels == ["1girl", "smile"]
    assert ds.records[3].source == str(tmp_path / "custom" / "4.webp") and ds.records[3].user_tags == ["miku"]
    assert len(load_dataset(f"danbooru:{path}").labels) == 4
    with pytest.raises(AutotagError, match="Danbooru metadata not found"):
        load_dataset(f"danbooru:{tmp_path / 'nope.jsonl'}")


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_idx_reader_on_written_files(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 6), ("t10k", 4)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    images, labels = read_fashion_mnist(tmp_path, "test")
    assert images.shape == (4, 28, 28) and list(labels) == [0, 1, 2, 3]
    ds = load_dataset(f"fashion-mnist:{tmp_path}")
    assert len(ds.split("train")) == 6 and len(ds.split("test")) == 4
    assert ds.records[1].labels == ["trouser"]
    with Image.open(ds.records[2].source) as im:
        np.testing.assert_array_equal(np.asarray(im), read_fashion_mnist(tmp_path, "train")[0][2])
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x09abc"))
    with pytest.raises(AutotagError, match="truncated"):
        read_fashion_mnist(tmp_path, "test")
    with pytest.raises(AutotagError, match="Fashion-MNIST not found"):
        load_dataset(f"fashion-mnist:{tmp_path / 'empty'}")


def test_fashion_mnist_real_files(fashion_mnist_dir):
    images, labels = read_fashion_mnist(fashion_mnist_dir, "test")
    assert images.shape == (10000, 28, 28) and np.bincount(labels).tolist() == [1000] * 10
    ds = load_dataset(f"fashion-mnist:{fashion_mnist_dir}", limit=20)
    assert len(ds) == 40 and ds.labels == FASHION_MNIST_CLASSES and ds.single_label
    assert ds.split("test").records[0].labels == [FASHION_MNIST_CLASSES[labels[0]]]


def test_mosaic_user_tag_noise_matches_its_parameters(fashion_mnist_dir):
    images, classes = read_fashion_mnist(fashion_mnist_dir, "test")
    cfg = MosaicConfig()
    assert 95 <= len(user_tag_vocabulary()) <= 105 and len(set(user_tag_vocabulary())) == len(user_tag_vocabulary())
    _, labels, tags = generate_split(images[:2000], classes[:2000], 3000, cfg, np.random.default_rng(1))
    counts = np.array([len(lab) for lab in labels])
    assert counts.min() == 1 and counts.max() == 4 and 2.0 < counts.mean() < 2.6  # 1..4 items, duplicates merge
    word_class = {w: c for c, words in CLASS_WORDS.items() for w in words}
    mentioned = [any(word_class.get(t) == c for t in tg) for lab, tg in zip(labels, tags, strict=True) for c in lab]
    assert abs(np.mean(mentioned) - cfg.p_mention) < 0.03
    wrong = [sum(1 for t in tg if word_class.get(t) not in lab) for lab, tg in zip(labels, tags, strict=True)]
    assert 0.9 < np.mean(wrong) < 1.05  # Poisson(1) wrong tags per image, a few merged as duplicates
    assert any(t in UNRELATED_WORDS for tg in tags for t in tg)
    exact = MosaicConfig(p_mention=1.0, wrong_rate=0.0)
    _, labels, tags = generate_split(images[:50], classes[:50], 50, exact, np.random.default_rng(1))
    assert all(sorted(word_class[t] for t in tg) == sorted(lab) for lab, tg in zip(labels, tags, strict=True))


def test_write_fashion_mosaic_is_deterministic_and_split_clean(tmp_path, fashion_mnist_dir):
    a = write_fashion_mosaic(tmp_path / "a", 40, 10, 30, seed=3)
    b = write_fashion_mosaic(tmp_path / "b", 40, 10, 30, seed=3)
    c = write_fashion_mosaic(tmp_path / "c", 40, 10, 30, seed=4)
    assert (a / "manifest.jsonl").read_text() == (b / "manifest.jsonl").read_text()
    assert (a / "images/test/test_00007.png").read_bytes() == (b / "images/test/test_00007.png").read_bytes()
    assert (a / "manifest.jsonl").read_text() != (c / "manifest.jsonl").read_text()
    # the test split depends only on (seed, n_test): more training images leave it unchanged
    d = write_fashion_mosaic(tmp_path / "d", 50, 10, 30, seed=3)
    ds_a, ds_d = load_dataset(f"fashion-mosaic:{a}"), load_dataset(str(d))
    assert [r.labels for r in ds_a.split("test")] == [r.labels for r in ds_d.split("test")]

    ds = load_dataset(f"fashion-mosaic:{a}")
    assert ds.name == "fashion-mosaic" and not ds.single_label and ds.labels == FASHION_MNIST_CLASSES
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [40, 10, 30]
    train_pool = {g.tobytes() for g in read_fashion_mnist(fashion_mnist_dir, "train")[0]}
    test_images, test_classes = read_fashion_mnist(fashion_mnist_dir, "test")
    test_pool = {g.tobytes(): FASHION_MNIST_CLASSES[y] for g, y in zip(test_images, test_classes, strict=True)}
    for split, pool in (("train", train_pool), ("test", test_pool)):
        for rec in ds.split(split).records[:15]:
            with Image.open(rec.source) as im:
                pixels = np.asarray(im)
            assert pixels.shape == (56, 56)
            cells = [pixels[r : r + 28, c : c + 28] for r in (0, 28) for c in (0, 28)]
            garments = [cell.tobytes() for cell in cells if cell.any()]
            assert 1 <= len(garments) <= 4 and all(g in pool for g in garments)
            if split == "test":
                assert sorted({test_pool[g] for g in garments}) == sorted(rec.labels)
    meta = json.loads((a / "mosaic.json").read_text())
    assert meta["config"]["p_mention"] == 0.5 and meta["config"]["seed"] == 3


def test_mosaic_rejects_bad_parameters(tmp_path):
    with pytest.raises(AutotagError, match="max_items"):
        write_fashion_mosaic(tmp_path, 1, 1, 1, grid=2, max_items=5)
    with pytest.raises(AutotagError, match="write it first"):
        load_dataset(f"fashion-mosaic:{tmp_path / 'none'}")
