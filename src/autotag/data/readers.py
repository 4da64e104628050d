"""Readers for the formats people keep labelled images in: our manifest, folder-per-class, COCO,
NUS-WIDE's release layout and Danbooru-style metadata exports."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from autotag.data.base import Dataset, register_reader, require_file
from autotag.types import AutotagError, ImageRecord

_LIST_SEPARATORS = re.compile(r"[|;]")


def _as_list(value: Any) -> list[str]:
    """Labels from a JSON list or a string separated by | or ; (CSV cells)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in _LIST_SEPARATORS.split(value) if v.strip()]
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    raise AutotagError(f"expected a list of strings, got {type(value).__name__}: {value!r}")


def _vocabulary(records: list[ImageRecord], folder: Path) -> list[str]:
    """labels.txt next to the manifest fixes the column order; otherwise labels sorted by name."""
    labels_file = folder / "labels.txt"
    if labels_file.is_file():
        vocab = [line.strip() for line in labels_file.read_text().splitlines() if line.strip()]
        unknown = sorted({lab for r in records for lab in r.labels} - set(vocab))
        if unknown:
            raise AutotagError(f"{labels_file} lacks labels used in the manifest: {unknown[:5]}; add them")
        return vocab
    return sorted({lab for r in records for lab in r.labels})


def _resolve(path: str, base: Path) -> str:
    if "://" in path:
        return path
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else base / p)


@register_reader("manifest", "manifest:FILE.csv|FILE.jsonl (columns path, labels, optional user_tags, split)")
def manifest_dataset(argument: str, **_: Any) -> Dataset:
    """A CSV or JSONL manifest. Paths are relative to the manifest's folder; CSV lists use | or ;."""
    if not argument:
        raise AutotagError("manifest needs a file: manifest:FILE.csv or manifest:FILE.jsonl")
    path = require_file(Path(argument).expanduser(), "manifest")
    base = path.parent
    rows: list[dict[str, Any]] = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "path" not in reader.fieldnames:
                raise AutotagError(f"{path}: the CSV header must name a 'path' column (and 'labels')")
            rows = list(reader)
    elif path.suffix.lower() == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise AutotagError(f"{path}:{number}: not valid JSON ({exc.msg}); fix that line") from exc
                if not isinstance(row, dict) or "path" not in row:
                    raise AutotagError(f"{path}:{number}: each line must be an object with a 'path' field")
                rows.append(row)
    else:
        raise AutotagError(f"{path}: a manifest is a .csv or .jsonl file")
    records = [
        ImageRecord(
            _resolve(str(row["path"]), base),
            _as_list(row.get("labels")),
            _as_list(row.get("user_tags")),
            (row.get("split") or None),
        )
        for row in rows
    ]
    single = bool(records) and all(len(r.labels) == 1 for r in records)
    return Dataset(records, _vocabulary(records, base), path.stem, single_label=single, info={"manifest": str(path)})


_SPLIT_NAMES = ("train", "val", "validation", "test")


@register_reader("folder", "folder:DIR (one subfolder per class, optionally under train/ val/ test/)")
def folder_dataset(argument: str, **_: Any) -> Dataset:
    from autotag.ingest import IMAGE_EXTENSIONS

    root = Path(argument).expanduser()
    if not root.is_dir():
        raise AutotagError(f"folder dataset not found: {root}; pass folder:DIR with one subfolder per class")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    split_dirs = [p for p in subdirs if p.name in _SPLIT_NAMES]
    layout = [(p, p.name) for p in split_dirs] if split_dirs and len(split_dirs) == len(subdirs) else [(root, None)]
    records: list[ImageRecord] = []
    classes: set[str] = set()
    for top, split in layout:
        for class_dir in sorted(p for p in top.iterdir() if p.is_dir() and not p.name.startswith(".")):
            classes.add(class_dir.name)
            for f in sorted(class_dir.rglob("*")):
                if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
                    records.append(ImageRecord(str(f), [class_dir.name], [], split))
    if not records:
        raise AutotagError(f"no images found under {root}; expected {root}/<class>/<image files>")
    return Dataset(records, sorted(classes), root.name, single_label=True, info={"root": str(root)})


@register_reader("coco", "coco:ANNOTATIONS.json[:IMAGES_DIR] (COCO instances file)")
def coco_dataset(argument: str, **_: Any) -> Dataset:
    """COCO instances JSON -> image -> set of category names (column order: category id order)."""
    ann_arg, _, images_arg = argument.partition(":")
    ann_path = require_file(Path(ann_arg).expanduser(), "COCO annotations", "pass coco:instances_XXX.json")
    try:
        data = json.loads(ann_path.read_text(encoding="utf-8"))
        categories = {int(c["id"]): str(c["name"]) for c in data["categories"]}
        images = [(int(im["id"]), str(im["file_name"])) for im in data["images"]]
        annotations = [(int(a["image_id"]), int(a["category_id"])) for a in data.get("annotations", [])]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise AutotagError(f"{ann_path} is not a COCO instances file ({exc}); expected images/categories") from exc
    match = re.match(r"instances_(\w+)", ann_path.stem)
    split_name = match.group(1) if match else None  # e.g. "val2017"
    if images_arg:
        images_dir = Path(images_arg).expanduser()
    else:  # the official layout: annotations/instances_val2017.json next to val2017/
        guesses = [ann_path.parent.parent / split_name, ann_path.parent / split_name] if split_name else []
        images_dir = next((g for g in guesses if g.is_dir()), ann_path.parent)
    labels_of: dict[int, set[str]] = {}
    for image_id, category_id in annotations:
        if category_id not in categories:
            raise AutotagError(f"{ann_path}: annotation uses unknown category id {category_id}")
        labels_of.setdefault(image_id, set()).add(categories[category_id])
    order = [categories[k] for k in sorted(categories)]
    rank = {name: i for i, name in enumerate(order)}
    split = None
    if split_name:
        split = next((s for s in ("train", "val", "test") if split_name.startswith(s)), split_name)
    records = [
        ImageRecord(str(images_dir / file_name), sorted(labels_of.get(image_id, ()), key=rank.__getitem__), [], split)
        for image_id, file_name in images
    ]
    return Dataset(records, order, ann_path.stem, info={"annotations": str(ann_path), "images": str(images_dir)})


def _read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]


def _first_file(root: Path, candidates: list[str], what: str) -> Path:
    for c in candidates:
        if (root / c).is_file():
            return root / c
    raise AutotagError(f"NUS-WIDE {what} not found in {root}: looked for {', '.join(candidates)}")


@register_reader("nus-wide", "nus-wide:DIR (NUS-WIDE release: ImageList/, Groundtruth/, NUS_WID_Tags/, Flickr/)")
def nus_wide_dataset(argument: str, **_: Any) -> Dataset:
    """NUS-WIDE as released: the official train/test image lists, the 81 concept ground-truth files
    (Groundtruth/TrainTestLabels/Labels_<concept>_<Train|Test>.txt, one 0/1 per line) and, when
    present, the user tags restricted to the 1000 most frequent (NUS_WID_Tags/TagList1k.txt with
    Train_Tags1k.dat / Test_Tags1k.dat, one row of 1000 0/1 values per image). Images live under
    DIR/Flickr/<folder>/<file> as the image lists name them (Windows paths in the release)."""
    root = Path(argument).expanduser()
    if not root.is_dir():
        raise AutotagError(f"NUS-WIDE folder not found: {root}; pass nus-wide:DIR of the unpacked release")
    concepts_file = _first_file(root, ["Concepts81.txt", "ConceptsList/Concepts81.txt"], "concept list")
    concepts = _read_lines(concepts_file)
    tag_list_file = root / "NUS_WID_Tags" / "TagList1k.txt"
    tag_vocab = _read_lines(tag_list_file) if tag_list_file.is_file() else []
    image_root = next((root / d for d in ("Flickr", "images", "Images") if (root / d).is_dir()), root / "Flickr")
    records: list[ImageRecord] = []
    for split, cap in (("train", "Train"), ("test", "Test")):
        list_file = _first_file(root, [f"ImageList/{cap}Imagelist.txt"], f"{split} image list")
        paths = [p.replace("\\", "/") for p in _read_lines(list_file)]
        columns = []
        for concept in concepts:
            gt = require_file(
                root / "Groundtruth" / "TrainTestLabels" / f"Labels_{concept}_{cap}.txt",
                "NUS-WIDE ground truth",
                "the Groundtruth/TrainTestLabels folder of the release is needed",
            )
            values = _read_lines(gt)
            if len(values) != len(paths):
                raise AutotagError(f"{gt} has {len(values)} lines but {list_file.name} lists {len(paths)} images")
            columns.append([v.split()[0] == "1" for v in values])
        tag_rows: list[list[str]] = [[] for _ in paths]
        tags_file = root / "NUS_WID_Tags" / f"{cap}_Tags1k.dat"
        if tag_vocab and tags_file.is_file():
            rows = _read_lines(tags_file)
            if len(rows) != len(paths):
                raise AutotagError(f"{tags_file} has {len(rows)} rows but {list_file.name} lists {len(paths)} images")
            for i, row in enumerate(rows):
                tag_rows[i] = [tag_vocab[j] for j, v in enumerate(row.split()) if v == "1" and j < len(tag_vocab)]
        for i, rel in enumerate(paths):
            rel = rel.split("Flickr/", 1)[-1]
            labels = [c for c, col in zip(concepts, columns, strict=True) if col[i]]
            records.append(ImageRecord(str(image_root / rel), labels, tag_rows[i], split))
    return Dataset(records, concepts, "nus-wide", info={"root": str(root), "user_tag_vocabulary": tag_vocab})


def _danbooru_general_tags(row: dict[str, Any]) -> list[str]:
    if "tag_string_general" in row:
        return str(row["tag_string_general"]).split()
    if isinstance(row.get("tags"), list):  # older exports: [{"name": ..., "category": "0"}, ...]
        return [str(t["name"]) for t in row["tags"] if str(t.get("category", "0")) == "0"]
    return str(row.get("tag_string", "")).split()


def _danbooru_other_tags(row: dict[str, Any]) -> list[str]:
    tags: list[str] = []
    for key in ("tag_string_character", "tag_string_copyright"):
        tags.extend(str(row.get(key, "")).split())
    if isinstance(row.get("tags"), list):
        tags.extend(str(t["name"]) for t in row["tags"] if str(t.get("category", "0")) in ("3", "4"))
    return tags


@register_reader("danbooru", "danbooru:FILE.jsonl[:IMAGES_DIR] (Danbooru-style metadata, top-N general tags)")
def danbooru_dataset(argument: str, top_n: int = 1000, **_: Any) -> Dataset:
    """Danbooru-style JSONL (one post per line). Labels = the post's general tags among the top_n most
    frequent in the file; user_tags = its character and copyright tags. The image is `path` or
    `file_name` when given, else IMAGES_DIR/<id mod 1000, 4 digits>/<id>.<file_ext> (the Danbooru20xx
    mirror layout); IMAGES_DIR defaults to the JSONL's folder."""
    file_arg, _, images_arg = argument.partition(":")
    path = require_file(Path(file_arg).expanduser(), "Danbooru metadata", "pass danbooru:FILE.jsonl")
    images_dir = Path(images_arg).expanduser() if images_arg else path.parent
    posts: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                try:
                    posts.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise AutotagError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
    counts = Counter(t for post in posts for t in set(_danbooru_general_tags(post)))
    vocab = [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top_n]]
    keep = set(vocab)
    rank = {t: i for i, t in enumerate(vocab)}
    records = []
    for post in posts:
        source = post.get("path") or post.get("file_name")
        if source:
            source = _resolve(str(source), images_dir)
        elif "id" in post:
            post_id = int(post["id"])
            source = str(images_dir / f"{post_id % 1000:04d}" / f"{post_id}.{post.get('file_ext', 'jpg')}")
        else:
            raise AutotagError(f"{path}: a post has neither path, file_name nor id; cannot find its image")
        labels = sorted({t for t in _danbooru_general_tags(post) if t in keep}, key=rank.__getitem__)
        records.append(ImageRecord(source, labels, _danbooru_other_tags(post), post.get("split")))
    return Dataset(records, vocab, path.stem, info={"metadata": str(path), "top_n": top_n})


@register_reader("realphotos", "realphotos[:DIR] (the real-photo benchmark built by `make realphotos`)")
def realphotos_dataset(argument: str, **_: Any) -> Dataset:
    """The project's real-photo benchmark as built by scripts/build_realphotos.py (default folder
    .cache/realphotos). Labels are the pictures' right tags; everything else a picture carries (id,
    kind, style, wrong tags, people, objects, colours) is in info["pictures"], keyed by image path."""
    root = Path(argument or ".cache/realphotos").expanduser()
    index = require_file(root / "realphotos.jsonl", "real-photo benchmark", "build it with `make realphotos`")
    records: list[ImageRecord] = []
    pictures: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(index.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            path = str(root / row["path"])
            records.append(ImageRecord(path, _as_list(row.get("tags")), [], row.get("split") or None))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise AutotagError(f"{index}:{number}: not a benchmark record ({exc}); run `make realphotos`") from exc
        side = {k: v for k, v in row.items() if k not in ("path", "tags", "split")}
        side["people"] = str(side.get("people", "0"))
        pictures[path] = side
    if not records:
        raise AutotagError(f"{index} lists no pictures; rebuild with `make realphotos`")
    vocab = sorted({lab for r in records for lab in r.labels})
    return Dataset(records, vocab, "realphotos", info={"root": str(root), "pictures": pictures})
