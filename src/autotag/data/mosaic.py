"""FashionMosaic: a seeded multi-label benchmark built from real Fashion-MNIST garments.

Each image is a grid (default 2x2) of 28 px cells holding 1..max_items garments in random cells
(empty cells stay black), labels = the set of garment classes present. Mosaics of the train and
validation splits use garments of Fashion-MNIST's train split only (disjoint pools: the last 10,000
train garments feed validation), test mosaics only its test split.

Each image also gets noisy user tags like an uploader would type: every true class is mentioned,
with probability `p_mention`, by one of its words (synonyms and related words such as "tee",
"sneakers", "handbag"); then a Poisson(`wrong_rate`) number of wrong tags is added, each a word of a
class that is *not* present with probability `other_class_share`, else an unrelated word (colours,
places, moods, "instagood"-like filler).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autotag.data.base import Dataset, register_reader, require_file
from autotag.data.fashion_mnist import CLASSES, read_fashion_mnist
from autotag.types import AutotagError

GENERATOR_VERSION = 1

CLASS_WORDS: dict[str, list[str]] = {
    "t-shirt": ["t-shirt", "tee", "tshirt", "top", "graphictee"],
    "trouser": ["trouser", "trousers", "pants", "jeans", "slacks"],
    "pullover": ["pullover", "sweater", "jumper", "knitwear", "sweatshirt"],
    "dress": ["dress", "gown", "sundress", "frock", "maxidress"],
    "coat": ["coat", "jacket", "overcoat", "parka", "outerwear"],
    "sandal": ["sandal", "sandals", "flipflops", "slides", "summershoes"],
    "shirt": ["shirt", "blouse", "buttondown", "flannel", "oxfordshirt"],
    "sneaker": ["sneaker", "sneakers", "trainers", "kicks", "runningshoes"],
    "bag": ["bag", "handbag", "purse", "tote", "backpack"],
    "ankle-boot": ["ankle-boot", "boots", "booties", "chelsea-boots", "footwear"],
}
UNRELATED_WORDS: list[str] = [
    # colours
    "black", "white", "red", "blue", "green", "pink", "beige", "navy", "grey", "pastel",
    # places
    "paris", "london", "tokyo", "newyork", "beach", "city", "street", "mall", "home", "travel",
    # moods and occasions
    "happy", "cozy", "chill", "vibes", "weekend", "party", "summer", "winter", "autumn", "spring",
    # filler hashtags
    "instagood", "photooftheday", "love", "ootd", "style", "fashion", "trendy", "outfit", "look", "new",
    "sale", "shopping", "vintage", "cute", "musthave", "tbt", "follow", "likeforlike", "picoftheday", "mood",
]  # fmt: skip


@dataclass(frozen=True)
class MosaicConfig:
    n_train: int = 20_000
    n_val: int = 5_000
    n_test: int = 5_000
    seed: int = 0
    grid: int = 2
    min_items: int = 1
    max_items: int = 4
    p_mention: float = 0.5
    wrong_rate: float = 1.0  # mean number of wrong tags per image
    other_class_share: float = 0.3  # share of wrong tags that name a garment class not in the image
    val_pool: int = 10_000  # Fashion-MNIST train garments reserved for validation mosaics
    version: int = GENERATOR_VERSION

    def check(self) -> None:
        cells = self.grid * self.grid
        if self.grid < 1 or not 1 <= self.min_items <= self.max_items <= cells:
            raise AutotagError(f"need 1 <= min_items <= max_items <= grid*grid ({cells}); got {self}")
        if not 0 <= self.p_mention <= 1 or self.wrong_rate < 0 or not 0 <= self.other_class_share <= 1:
            raise AutotagError("p_mention and other_class_share must lie in [0, 1] and wrong_rate >= 0")
        if min(self.n_train, self.n_val, self.n_test) < 0:
            raise AutotagError("image counts must be >= 0")


def user_tag_vocabulary() -> list[str]:
    """Every word the generator can type (about 100)."""
    return [w for words in CLASS_WORDS.values() for w in words] + list(UNRELATED_WORDS)


def _user_tags(rng: np.random.Generator, present: list[str], cfg: MosaicConfig) -> list[str]:
    tags = [str(rng.choice(CLASS_WORDS[c])) for c in present if rng.random() < cfg.p_mention]
    absent = [c for c in CLASSES if c not in present]
    for _ in range(int(rng.poisson(cfg.wrong_rate))):
        if absent and rng.random() < cfg.other_class_share:
            tags.append(str(rng.choice(CLASS_WORDS[str(rng.choice(absent))])))
        else:
            tags.append(str(rng.choice(UNRELATED_WORDS)))
    tags = list(dict.fromkeys(tags))
    rng.shuffle(tags)
    return tags


def generate_split(
    garments: np.ndarray, classes: np.ndarray, n: int, cfg: MosaicConfig, rng: np.random.Generator
) -> tuple[np.ndarray, list[list[str]], list[list[str]]]:
    """n mosaics from a pool of garments: (images (n, H, W) uint8, labels, user tags)."""
    g, side = cfg.grid, garments.shape[1]
    images = np.zeros((n, g * side, g * side), dtype=np.uint8)
    labels: list[list[str]] = []
    user_tags: list[list[str]] = []
    for i in range(n):
        k = int(rng.integers(cfg.min_items, cfg.max_items + 1))
        cells = rng.choice(g * g, size=k, replace=False)
        picks = rng.integers(0, len(garments), size=k)
        for cell, pick in zip(cells, picks, strict=True):
            r, c = divmod(int(cell), g)
            images[i, r * side : (r + 1) * side, c * side : (c + 1) * side] = garments[pick]
        present_idx = sorted({int(classes[p]) for p in picks})
        present = [CLASSES[j] for j in present_idx]
        labels.append(present)
        user_tags.append(_user_tags(rng, present, cfg))
    return images, labels, user_tags


def write_fashion_mosaic(
    out_dir: str | Path,
    n_train: int = 20_000,
    n_val: int = 5_000,
    n_test: int = 5_000,
    seed: int = 0,
    *,
    fashion_mnist_dir: str | Path | None = None,
    progress: bool = False,
    **params: Any,
) -> Path:
    """Write images/<split>/<split>_NNNNN.png, manifest.jsonl, labels.txt and mosaic.json; returns out_dir.

    Each split has its own random stream (seed, split), so e.g. the test set does not change when
    n_train does. A folder already holding the same configuration is left as it is.
    """
    cfg = MosaicConfig(n_train=n_train, n_val=n_val, n_test=n_test, seed=seed, **params)
    cfg.check()
    out = Path(out_dir).expanduser()
    meta_path = out / "mosaic.json"
    if meta_path.is_file() and (out / "manifest.jsonl").is_file():
        try:
            if json.loads(meta_path.read_text()).get("config") == asdict(cfg):
                return out
        except json.JSONDecodeError:
            pass
    from PIL import Image

    train_x, train_y = read_fashion_mnist(fashion_mnist_dir, "train")
    test_x, test_y = read_fashion_mnist(fashion_mnist_dir, "test")
    order = np.random.default_rng([seed, 99]).permutation(len(train_x))
    val_idx, train_idx = order[: cfg.val_pool], order[cfg.val_pool :]
    pools = {
        "train": (train_x[train_idx], train_y[train_idx], n_train, 0),
        "val": (train_x[val_idx], train_y[val_idx], n_val, 1),
        "test": (test_x, test_y, n_test, 2),
    }
    lines: list[str] = []
    for split, (garments, classes, n, stream) in pools.items():
        rng = np.random.default_rng([seed, stream])
        images, labels, tags = generate_split(garments, classes, n, cfg, rng)
        folder = out / "images" / split
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            rel = f"images/{split}/{split}_{i:05d}.png"
            Image.fromarray(images[i], mode="L").save(out / rel)
            lines.append(json.dumps({"path": rel, "labels": labels[i], "user_tags": tags[i], "split": split}))
            if progress and (i + 1) % 5000 == 0:
                print(f"{split}: {i + 1}/{n}", flush=True)
    (out / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    tmp = out / f"manifest.jsonl.tmp{os.getpid()}"
    tmp.write_text("\n".join(lines) + ("\n" if lines else ""))
    os.replace(tmp, out / "manifest.jsonl")
    meta = {
        "name": "FashionMosaic",
        "config": asdict(cfg),
        "labels": CLASSES,
        "user_tag_vocabulary": user_tag_vocabulary(),
        "class_words": CLASS_WORDS,
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return out


@register_reader("fashion-mosaic", "fashion-mosaic:DIR (a folder written by `autotag mosaic --out DIR`)")
def fashion_mosaic_dataset(argument: str, **_: Any) -> Dataset:
    from autotag.data.readers import manifest_dataset

    folder = Path(argument).expanduser()
    hint = f"write it first: autotag mosaic --out {folder}"
    require_file(folder / "mosaic.json", "FashionMosaic metadata", hint)
    require_file(folder / "manifest.jsonl", "FashionMosaic manifest", hint)
    data = manifest_dataset(str(folder / "manifest.jsonl"))
    data.name = "fashion-mosaic"
    data.single_label = False
    data.info.update(json.loads((folder / "mosaic.json").read_text()))
    return data
