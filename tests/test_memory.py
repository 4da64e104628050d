"""Memory on big inputs: the decode budget bounds the full-size pictures decoding threads hold at once,
the detector runs a few images at a time, colours and lightness share one thumbnail, and the whole
`autotag tag` process stays under its peak-memory goal on 4K pictures."""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autotag.ingest import DecodeBudget, decode_with_info
from autotag.ingest.decode import decode_cost, decoded
from autotag.pipeline import Item, Tagger
from autotag.pipeline.readers import read_colors_and_properties
from autotag.pipeline.tagger import DETECTOR_BATCH
from autotag.read import dominant_colors, picture_properties
from autotag.testing.fake import FakeDetector, FakeEncoder


def _png(size: tuple[int, int], seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)  # a coarse pattern: cheap to encode, not flat
    buf = io.BytesIO()
    Image.fromarray(small).resize(size, Image.NEAREST).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def test_budget_never_lets_holders_exceed_it_and_a_picture_over_it_runs_alone():
    budget = DecodeBudget(100)
    inside, most = [0], [0]
    lock = threading.Lock()

    def hold(need: int) -> None:
        with budget.hold(need):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.02)
            with lock:
                inside[0] -= 1

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(hold, [40] * 12))
    assert most[0] == 2 and budget.peak == 80 and budget.in_use == 0  # 40 + 40 fit, a third does not
    most[0] = 0
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(hold, [500, 30, 500, 30]))  # over the budget: alone (counted as the whole budget)
    assert budget.peak == 100 and budget.in_use == 0


def test_budget_is_held_while_the_decoded_picture_is_in_use_and_released_on_errors():
    budget = DecodeBudget(10**9)
    data = _png((1200, 800))
    with decoded(data, min_side=224, budget=budget) as (im, info):
        assert budget.in_use == decode_cost("PNG", 1200, 800) == 1200 * 800 * 8
        assert im.size == (1200, 800) and info["width"] == 1200
    assert budget.in_use == 0
    with pytest.raises(RuntimeError), decoded(data, budget=budget):
        raise RuntimeError("a consumer failed")
    assert budget.in_use == 0
    # a JPEG is counted at the reduced size its draft decodes, not at the file's size
    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).save(buf, "JPEG")
    with decoded(buf.getvalue(), min_side=100, budget=budget) as (im, _):
        assert im.size == (150, 100) and budget.in_use == decode_cost("JPEG", 150, 100)


def test_tagger_decodes_big_pictures_within_its_budget_with_the_same_results(fake_model, tmp_path):
    from autotag.config import load_settings

    sources = [_png((1600, 1200), seed) for seed in range(6)]  # 1.92 MP: ~15 MB each by decode_cost
    per_picture = decode_cost("PNG", 1600, 1200)

    def run(memory_mb: int) -> tuple[Tagger, list[Item]]:
        settings = load_settings(cache_dir=tmp_path / "cache", batch_size=3, workers=4, decode_memory_mb=memory_mb)
        tagger = Tagger(FakeEncoder(), settings=settings, detector=FakeDetector())  # type: ignore[arg-type]
        return tagger, list(tagger.stream(sources, keep_images=True))

    tight, tight_items = run(32)  # room for two at a time
    assert per_picture * 2 <= tight.decode_budget.peak <= 32 * 2**20
    loose, loose_items = run(1024)
    for a, b in zip(tight_items, loose_items, strict=True):
        assert a.ok and b.ok
        np.testing.assert_array_equal(a.embedding, b.embedding)
        assert a.detections == b.detections and np.array_equal(np.asarray(a.image), np.asarray(b.image))


def test_detector_runs_a_few_images_at_a_time(fake_model, tmp_path):
    from autotag.config import load_settings

    detector = FakeDetector()
    sizes = []
    run = detector.run
    detector.run = lambda batch: (sizes.append(len(batch)), run(batch))[1]  # type: ignore[method-assign]
    tagger = Tagger(FakeEncoder(), settings=load_settings(cache_dir=tmp_path / "c", batch_size=8),
                    detector=detector)  # type: ignore[arg-type]  # fmt: skip
    pictures = [Image.new("RGB", (200, 100), (40 * i, 90, 200 - 20 * i)) for i in range(8)]
    items = list(tagger.stream(pictures))
    assert sizes and max(sizes) == DETECTOR_BATCH and sum(sizes) == 8
    inputs = [detector.preprocess(p) for p in pictures]
    peaks, boxes = run(np.stack([x for x, _ in inputs]))  # all at once: the same detections
    assert [i.detections for i in items] == [detector.decode(peaks[k], boxes[k], inputs[k][1]) for k in range(8)]


def test_detector_works_on_as_many_pictures_at_once_as_it_has_workers(fake_model, tmp_path):
    from autotag.config import load_settings
    from autotag.pipeline.tagger import detector_workers

    detector = FakeDetector()
    lock, busy, most = threading.Lock(), [0], [0]
    run = detector.run

    def slow_run(batch):
        with lock:
            busy[0] += 1
            most[0] = max(most[0], busy[0])
        time.sleep(0.05)  # long enough for the other workers to start theirs
        with lock:
            busy[0] -= 1
        return run(batch)

    detector.run = slow_run  # type: ignore[method-assign]
    settings = load_settings(cache_dir=tmp_path / "c", batch_size=8, threads=3)
    tagger = Tagger(FakeEncoder(), settings=settings, detector=detector)  # type: ignore[arg-type]
    pictures = [Image.new("RGB", (200, 100), (30 * i, 90, 200 - 20 * i)) for i in range(8)]
    items = list(tagger.stream(pictures))
    assert detector_workers(settings) == 3 and most[0] == 3  # never more runs in flight than workers
    inputs = [detector.preprocess(p) for p in pictures]
    alone = [(run(x[None]), placement) for x, placement in inputs]
    assert [i.detections for i in items] == [detector.decode(a[0], b[0], p) for (a, b), p in alone]


def test_colours_and_lightness_come_from_one_thumbnail(monkeypatch, photos):
    import autotag.read.colors as colors

    made = []
    original = colors.thumbnail_pixels
    monkeypatch.setattr(colors, "thumbnail_pixels", lambda im, *a: (made.append(1), original(im, *a))[1])
    im = decode_with_info(photos["coffee"].read_bytes())[0]
    item = Item("coffee", meta={"width": im.width, "height": im.height}, image=im)
    read_colors_and_properties(item)
    assert len(made) == 1
    assert item.colors == dominant_colors(im) and item.properties == picture_properties(im.width, im.height, im)


def _big_pictures(folder: Path) -> list[Path]:
    """4K pictures of the kinds that cost most to decode: WebP, PNG with alpha, PNG, a large JPEG,
    made from a bundled photo so they are not flat."""
    from autotag.demo import bundled_photo

    base = bundled_photo("astronaut").convert("RGB")
    paths = []
    for i in range(8):
        im = base.rotate(9 * i).resize((4096, 4096) if i % 4 == 0 else (3840, 2160), Image.BILINEAR)
        kind = ("webp", "png", "rgba.png", "jpg")[i % 4]
        path = folder / f"big_{i}.{kind}"
        if kind == "rgba.png":
            im.putalpha(200)
        im.save(path, **({"quality": 80, "method": 0} if kind == "webp" else {"compress_level": 1}
                         if kind.endswith("png") else {"quality": 90}))  # fmt: skip
        paths.append(path)
    return paths


@pytest.mark.slow
def test_autotag_tag_peak_memory_stays_under_700_mb_on_4k_pictures(tmp_path):
    """Issue 14's goal for `autotag tag`, with the detector, on 4K WebP/PNG/JPEG (4 decoding threads)."""
    _big_pictures(tmp_path)
    from autotag.testing.server import run_measured

    autotag = str(Path(sys.executable).with_name("autotag"))
    proc, peak_mb, _ = run_measured([autotag, "tag", str(tmp_path), "--format", "jsonl"],
                                    env={**os.environ, "AUTOTAG_WORKERS": "4"})  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.count(b"\n") == 8, proc.stderr[-2000:]
    assert peak_mb < 700, f"peak RSS {peak_mb:.0f} MB"
