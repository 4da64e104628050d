"""The pipeline's plumbing (decode -> encode -> read -> decide) with the deterministic fake encoder:
order, per-file errors, the output cache, the skip hook, readers, the shared encoder batcher."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from autotag.index.duplicates import phash
from autotag.ingest import decode_image
from autotag.pipeline import KEPT_SIDE, Item, Tagger, TagOptions, default_tags
from autotag.testing.fake import FAKE_SPEC, FakeEncoder


@pytest.fixture
def tagger(fake_model, tmp_path) -> Tagger:
    return Tagger(FakeEncoder(), settings=_settings(tmp_path))


def _settings(tmp_path, **overrides):
    from autotag.config import load_settings

    return load_settings(**{"cache_dir": tmp_path / "cache", "batch_size": 3, "workers": 2, **overrides})


def test_stream_keeps_order_and_one_bad_file_never_stops_the_batch(tagger, photos, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    cat = Image.open(photos["chelsea"])
    sources = [photos["coffee"], str(tmp_path / "missing.jpg"), broken, photos["chelsea"].read_bytes(), cat,
               str(photos["chelsea"])]  # fmt: skip
    items = list(tagger.stream(sources, phash=True))
    assert [i.source for i in items] == [str(photos["coffee"]), str(tmp_path / "missing.jpg"), str(broken),
                                         "<bytes>", "<image>", str(photos["chelsea"])]  # fmt: skip
    assert [i.ok for i in items] == [True, False, False, True, True, True]
    assert "no such file" in items[1].error and "not an image" in items[2].error
    for item in (items[0], items[3], items[4], items[5]):
        assert item.tags and item.embedding.shape == (FAKE_SPEC.embedding_dim,) and item.logits.shape == (1000,)
        assert item.array is None and item.image is None  # nothing heavy is left on a yielded item
    size = photos["coffee"].stat().st_size
    assert items[0].meta == {"format": "JPEG", "width": 600, "height": 400, "size_bytes": size}
    # the same file as bytes or by path is the same image; as pixels in memory, almost the same picture
    assert items[3].content_hash == items[5].content_hash != items[4].content_hash
    np.testing.assert_array_equal(items[3].embedding, items[5].embedding)
    a, b = items[4].embedding, items[5].embedding
    assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) > 0.99
    assert items[5].phash == phash(decode_image(photos["chelsea"].read_bytes(), min_side=FAKE_SPEC.input_size))


def test_one_source_in_the_calling_thread_equals_the_stream(tagger, photos):
    options = TagOptions(top_k=3, threshold=0.01, categories=False)
    streamed = next(tagger.stream([photos["astronaut"]], options=options))
    alone = tagger.process(photos["astronaut"], options=options)
    assert [t.name for t in alone.tags] == [t.name for t in streamed.tags] and 1 <= len(alone.tags) <= 3
    assert alone.tags == default_tags(alone, options)  # the default model decides in exactly one place
    assert tagger.tag(photos["astronaut"], options=options) == alone.tags


def test_output_cache_is_filled_then_read_instead_of_encoding(tagger, photos):
    sources = [photos[n] for n in ("chelsea", "coffee", "rocket", "camera")]
    first = list(tagger.stream(sources, decide=False, cache=True))
    runs = tagger.encoder.calls
    assert runs >= 2 and not any(i.from_cache for i in first)  # batches of 3
    again = list(tagger.stream(sources, cache=True))
    assert tagger.encoder.calls == runs and all(i.from_cache for i in again)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.embedding, b.embedding)
        np.testing.assert_array_equal(a.logits, b.logits)
    assert [t.name for t in again[0].tags] == [t.name for t in tagger.tag(sources[0])]
    np.testing.assert_array_equal(tagger.embed(sources, cache=True), np.stack([i.embedding for i in first]))


def test_a_cutout_reaches_the_encoder_whole_and_a_photo_as_its_centre(tagger, photos):
    from autotag.encoders.base import preprocess
    from autotag.encoders.views import letterbox

    stamp = Image.new("RGBA", (600, 150), (0, 0, 0, 0))  # a tuxpaint-like stamp: transparent around a wide object
    stamp.paste((30, 90, 160, 255), (4, 20, 596, 130))
    data = io.BytesIO()
    stamp.save(data, "PNG")
    cutout, photo = (tagger.decode(s) for s in (data.getvalue(), photos["coffee"]))
    flattened = decode_image(data.getvalue())
    assert cutout.background == (255, 255, 255) and photo.background is None
    np.testing.assert_array_equal(cutout.array, letterbox(flattened, FAKE_SPEC, (255, 255, 255)))
    coffee = decode_image(photos["coffee"].read_bytes(), min_side=FAKE_SPEC.input_size)  # as the tagger decodes it
    np.testing.assert_array_equal(photo.array, preprocess(coffee, FAKE_SPEC))


def test_stopping_early_still_keeps_what_was_encoded(tagger, photos):
    stream = tagger.stream([photos[n] for n in ("chelsea", "coffee", "rocket", "camera")], decide=False, cache=True)
    next(stream)
    stream.close()
    cache = tagger.output_cache()
    assert cache is not None and len(cache.embeddings) >= 1 and len(cache.logits) == len(cache.embeddings)


def test_skip_hook_spares_decoding_and_encoding(tagger, photos):
    from autotag.ingest import content_hash

    known = content_hash(photos["coffee"].read_bytes())
    asked: list[str] = []

    def skip(digest: str) -> bool:
        asked.append(digest)
        return digest == known

    items = list(tagger.stream([photos["coffee"], photos["chelsea"]], skip=skip))
    assert items[0].skipped and items[0].embedding is None and not items[0].tags and items[0].ok
    assert not items[1].skipped and items[1].tags
    assert known in asked and len(asked) == 2
    assert tagger.encoder.calls == 1


def test_readers_get_the_decoded_picture_scaled_down_once(photos, tmp_path, fake_model):
    big = tmp_path / "big.png"
    Image.open(photos["chelsea"]).resize((1500, 1000)).save(big)
    seen: list[tuple[int, int]] = []
    patches: list[np.ndarray] = []

    def colours(item: Item) -> None:
        seen.append(item.image.size)
        patches.append(item.patch)
        item.colors = [{"name": "grey", "share": 1.0}]

    tagger = Tagger(FakeEncoder(), settings=_settings(tmp_path), readers=[colours])
    items = list(tagger.stream([big, photos["coffee"], tmp_path / "missing.png"]))
    # scaled down to 512 px: a 1500 px PNG, and a 600 px JPEG decoded at full size (its reduced scales are
    # under 512, although the encoder alone would have taken a quarter of it)
    assert seen == [(KEPT_SIDE, round(1000 * KEPT_SIDE / 1500)), (KEPT_SIDE, round(400 * KEPT_SIDE / 600))]
    # beside it, a 256 px centre patch at the decoded resolution (not scaled down), on the 8 px grid
    assert np.array_equal(patches[0], np.asarray(Image.open(big).convert("RGB"))[368:624, 616:872])
    assert items[0].image is None and items[0].patch is None
    assert items[0].to_dict()["colors"] == [{"name": "grey", "share": 1.0}]
    assert "colors" not in items[2].to_dict() and "objects" not in items[0].to_dict()
    kept = list(tagger.stream([big], keep_images=True))
    assert kept[0].image.size == seen[0]
    assert tagger.process(big).colors and tagger.process(big).image is None


def test_concurrent_callers_share_encoder_batches(photos, tmp_path, fake_model):
    class SlowEncoder(FakeEncoder):
        def run(self, batch):
            time.sleep(0.05)  # long enough for the other callers' images to queue up
            return super().run(batch)

    direct = Tagger(FakeEncoder(), settings=_settings(tmp_path))
    shared = Tagger(SlowEncoder(), settings=_settings(tmp_path, workers=16))
    batcher = shared.share_batches(8)
    datas = [photos[n].read_bytes() for n in sorted(photos)] * 2
    with ThreadPoolExecutor(len(datas)) as pool:
        items = list(pool.map(shared.process, datas))
    assert batcher.images == len(datas) and batcher.batches < len(datas)
    for data, item in zip(datas, items, strict=True):
        assert [t.name for t in item.tags] == [t.name for t in direct.process(data).tags]
    assert threading.active_count() < 100


def test_an_encoder_failure_reaches_every_waiting_caller(photos, tmp_path, fake_model):
    class Broken(FakeEncoder):
        def run(self, batch):
            raise RuntimeError("device lost")

    tagger = Tagger(Broken(), settings=_settings(tmp_path))
    tagger.share_batches(4)
    with pytest.raises(RuntimeError, match="device lost"):
        tagger.process(io.BytesIO(photos["coffee"].read_bytes()).getvalue())
