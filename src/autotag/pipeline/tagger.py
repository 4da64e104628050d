"""The one road from an image to its tags, used by the CLI, the HTTP API, the library, batch jobs and
evaluation: sources -> decode (worker threads) -> encode (batched ONNX Runtime: classifier, and for the
default model the object detector) -> read (colours, picture facts, style) -> decide.

Decoding runs in worker threads while the calling thread runs the models on the previous batch;
PIL and ONNX Runtime both release the GIL, so the two overlap on a multi-core machine. The decode
threads also prepare the detector's letter-boxed input from the same decoded picture.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from autotag.config import Settings, load_settings
from autotag.encoders import Encoder, create_encoder
from autotag.encoders.views import tagger_view
from autotag.ingest import DecodeBudget, ImageError, Source, content_hash, source_bytes, source_name
from autotag.ingest.decode import decoded, return_freed_pictures
from autotag.ingest.read import pixels_hash
from autotag.pipeline.decide import TagOptions, default_tags, named_objects, photo_params, softmax
from autotag.pipeline.encode import EncoderBatcher, OutputCache
from autotag.pipeline.item import Item
from autotag.pipeline.readers import Reader, default_readers, picture_readers
from autotag.progress import ProgressBar
from autotag.read.style import centre_patch
from autotag.types import AutotagError, Tag

if TYPE_CHECKING:
    from autotag.artifact import TrainedModel
    from autotag.encoders.detector import Detector

UserTags = Sequence[str] | Mapping[str, Sequence[str]] | None
KEPT_SIDE = 512  # the decoded picture kept for readers is scaled down to at most this long side
# Images per detector run. ONNX Runtime's peak grows with the batch (384 px: +49 MB at 1 image, +363 MB at
# 8, arena off) while the time per image does not shrink on a CPU (BENCHMARKS.md, "Memory on big inputs").
DETECTOR_BATCH = 1
# Pictures the detector works on at once, each run on one ONNX Runtime thread, beside the classifier's batch:
# its graph is ~200 small ops, and splitting each over two threads costs ~20% more CPU (a hand-over at every
# op) than running two pictures at once, one thread each (BENCHMARKS.md, "Detector speed without losing
# objects"). Each run in flight holds its own activations (~50 MB at 384 px), hence the cap.
MAX_DETECTOR_WORKERS = 4


class Tagger:
    """Tags images with the default model (ImageNet classifier + COCO object detector read through the
    consumer vocabulary) or a trained model folder (its own labels).

    >>> tagger = Tagger.default()
    >>> [t.name for t in tagger.tag("cat.jpg")][:3]

    `readers`: functions run on every decoded item (with `item.image`, long side 512 or the file's own
    size if smaller) after the encoder, filling a facet such as `item.colors`; the picture is decoded
    once for the encoder and all of them (JPEGs at a reduced scale that still gives the long side 512).
    `detector`: the object detector run beside the encoder, its detections read by the default decisions.
    """

    def __init__(
        self,
        encoder: Encoder,
        model: TrainedModel | None = None,
        settings: Settings | None = None,
        readers: Sequence[Reader] = (),
        detector: Detector | None = None,
    ) -> None:
        self.encoder = encoder
        self.model = model
        self.settings = settings or load_settings()
        self.readers = list(readers)
        self.detector = detector
        self._run: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] = encoder.run
        self._detect: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = detector.run if detector else None
        self._batcher: EncoderBatcher | None = None
        self._detecting = (
            ThreadPoolExecutor(detector_workers(self.settings), thread_name_prefix="detector") if detector else None
        )
        self._cache: OutputCache | None = None
        self._lock = threading.Lock()
        # caps how many callers of `process` hold a decoded full-size image at once
        self._decoding = threading.BoundedSemaphore(max(1, self.settings.workers))
        # and how much memory the decoding threads' full-size pictures hold at once (4K WebPs, PNGs)
        self.decode_budget = DecodeBudget(self.settings.decode_memory_mb * 2**20)
        return_freed_pictures()

    @classmethod
    def load(cls, model: str | None = None, **settings_overrides: Any) -> Tagger:
        """`model`: a registered encoder name (see `autotag models`) or a trained model folder.

        A trained folder keeps its own labels (plus the picture facets: colours, properties); a
        registered ImageNet encoder is the default model: with the object detector unless the
        `objects` setting is off, with the photo-or-art head where one reads its embeddings.
        """
        settings = load_settings(**settings_overrides)
        name = model or settings.model
        if Path(name).is_dir():
            from autotag.artifact import load_model

            trained = load_model(name)
            return cls(trained.make_encoder(settings.threads), trained, settings, readers=picture_readers())
        if "/" in name or name.startswith("."):
            raise AutotagError(f"model folder {name} does not exist")
        detector = load_detector(settings) if settings.objects else None  # first: a missing one fails fast
        encoder = create_encoder(name, threads=settings.threads)
        return cls(encoder, None, settings, readers=default_readers(encoder.spec.name), detector=detector)

    @classmethod
    def default(cls) -> Tagger:
        return cls.load()

    @property
    def model_name(self) -> str:
        return str(self.model.path) if self.model is not None else self.encoder.spec.name

    def share_batches(self, max_batch: int) -> EncoderBatcher:
        """From now on, concurrent callers share encoder (and detector) batches of up to `max_batch`
        images (a server). Returns the encoder's batcher."""
        with self._lock:
            if self._batcher is None:
                self._batcher = EncoderBatcher(self.encoder.run, max_batch, self.encoder.spec.name)
                self._run = self._batcher.run
                if self.detector is not None:
                    self._detect = EncoderBatcher(self.detector.run, min(max_batch, DETECTOR_BATCH), "detector").run
            return self._batcher

    def output_cache(self) -> OutputCache | None:
        """The on-disk cache of this encoder's outputs, or None when its outputs are not cached."""
        if not OutputCache.usable(self.encoder.spec):
            return None
        with self._lock:
            if self._cache is None:
                self._cache = OutputCache(self.settings.cache_dir / "embeddings", self.encoder.spec)
            return self._cache

    # -- the steps ---------------------------------------------------------------------------------
    def decode(
        self,
        source: Source,
        *,
        phash: bool = False,
        keep_image: bool = False,
        cache: OutputCache | None = None,
        skip: Callable[[str], bool] | None = None,
        detect: bool = False,
    ) -> Item:
        """One source -> an Item with its hash, metadata and encoder input (or its outputs from the
        cache, or `skipped` when `skip(content_hash)` says so, or the reason it cannot be used).
        detect: also the detector's letter-boxed input, made from the same decoded picture.
        Never raises for a bad image: one file never stops a batch."""
        detect = detect and self.detector is not None
        item = Item(source_name(source))
        try:
            if isinstance(source, Image.Image):
                im = source.convert("RGB")
                item.content_hash = pixels_hash(im)
                item.meta = {"format": "PIL", "width": im.width, "height": im.height, "size_bytes": 0}
                self._prepare(item, im, phash=phash, keep_image=keep_image, detect=detect)
                return item
            data = source_bytes(source)
            item.content_hash = content_hash(data)
            if skip is not None and skip(item.content_hash):
                item.skipped = True
                return item
            if cache is not None and not (phash or keep_image or detect) and cache.fill(item):
                return item
            with decoded(
                data,
                min_side=self.encoder.spec.input_size,
                max_pixels=self.settings.max_pixels,
                # readers get a picture of about KEPT_SIDE, the detector one of its input size
                min_long_side=max(KEPT_SIDE if keep_image else 0, self.detector.input_size if detect else 0),
                budget=self.decode_budget,  # held until the full-size picture is dropped
            ) as (im, item.meta):
                self._prepare(item, im, phash=phash, keep_image=keep_image, detect=detect)
        except AutotagError as exc:
            item.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a decoder bug on one file must not end the batch
            item.error = f"{type(exc).__name__}: {exc}"
        return item

    def _prepare(self, item: Item, im: Image.Image, *, phash: bool, keep_image: bool, detect: bool) -> None:
        """What every later step needs from the decoded picture, so the full-size picture can go."""
        item.array, item.background = tagger_view(im, self.encoder.spec)
        if phash:
            from autotag.index.duplicates import fingerprint

            item.fingerprint = fingerprint(im)
            item.phash = item.fingerprint.phash
        if keep_image:
            item.image = _scaled_down(im, KEPT_SIDE)
            item.patch = centre_patch(im)  # before the downscale: the style head reads its noise
        if detect:
            assert self.detector is not None
            picture = item.image if item.image is not None else im
            item.detector_input, item.placement = self.detector.preprocess(picture, _upright_size(item.meta, im))

    def encode(self, items: Sequence[Item], cache: OutputCache | None = None) -> None:
        """Run the encoder on every item that has an input, as one batch, filling logits and embedding;
        and the detector on every item with a detector input, filling its detections (a few pictures at
        once, while the encoder runs)."""
        looking = [i for i in items if i.detector_input is not None]
        detecting = []
        if looking and self.detector is not None and self._detect is not None and self._detecting is not None:
            for start in range(0, len(looking), DETECTOR_BATCH):
                detecting.append(self._detecting.submit(self._detect_items, looking[start : start + DETECTOR_BATCH]))
        todo = [i for i in items if i.array is not None and i.embedding is None]
        if todo:
            logits, embeddings = self._run(np.stack([i.array for i in todo]))
            for item, lg, emb in zip(todo, logits, embeddings, strict=True):
                item.logits, item.embedding, item.array = lg, emb, None
            if cache is not None:
                cache.put(todo)
        for done in detecting:
            done.result()

    def _detect_items(self, chunk: Sequence[Item]) -> None:
        assert self.detector is not None and self._detect is not None
        heat, sizes = self._detect(np.stack([i.detector_input for i in chunk]))
        for item, h, s in zip(chunk, heat, sizes, strict=True):
            item.detections = self.detector.decode(h, s, item.placement)
            item.detector_input = item.placement = None

    def decide(self, items: Sequence[Item], user_tags: UserTags = None, options: TagOptions | None = None) -> None:
        """Fill the tags of every encoded item: the default decision, or the trained model's heads."""
        options = options or TagOptions(self.settings.top_k, self.settings.threshold)
        done = [i for i in items if i.ok and i.embedding is not None and not i.skipped]
        if not done:
            return
        if self.model is None:
            for item in done:
                item.objects = named_objects(item.detections, softmax(item.logits), photo_params(item.style))
                item.tags = default_tags(item, options, self.encoder.spec.name)
            return
        typed = [user_tags_for(user_tags, i.source) for i in done]
        # the stored rule is usually top-k-predicted: k comes from the model's label-count head
        rows = self.model.tag(
            np.stack([i.embedding for i in done]),
            np.stack([i.logits for i in done]),
            [t or [] for t in typed] if any(t is not None for t in typed) else None,
        )
        for item, row in zip(done, rows, strict=True):  # --top-k caps what the model's own rule chose
            item.tags = list(row[: min(options.top_k, options.max_tags)])

    def read(self, items: Sequence[Item]) -> None:
        for item in items:
            if item.ok and item.image is not None:
                for reader in self.readers:
                    reader(item)

    # -- whole road ----------------------------------------------------------------------------------
    def stream(
        self,
        sources: Iterable[Source],
        *,
        options: TagOptions | None = None,
        user_tags: UserTags = None,
        decide: bool = True,
        cache: bool = False,
        phash: bool = False,
        keep_images: bool = False,
        skip: Callable[[str], bool] | None = None,
        on_item: Callable[[], None] | None = None,
    ) -> Iterator[Item]:
        """Yield one Item per source, in input order; a bad source carries its error.

        decide: fill tags (else only encoder outputs). cache: read and fill the output cache.
        phash: compute perceptual hashes. keep_images: leave `item.image` on the yielded items.
        skip(content_hash) -> True: the caller has this content already; it is neither decoded nor encoded.
        """
        batch_size, workers = self.settings.batch_size, max(1, self.settings.workers)
        store = self.output_cache() if cache else None
        # the signals (readers, detector) serve the decisions: only encoder outputs need neither
        need_image = keep_images or (decide and bool(self.readers))
        with ThreadPoolExecutor(workers) as pool:
            pending: deque[Future[Item]] = deque()
            source_iter = iter(sources)
            exhausted = False

            def submit() -> None:
                nonlocal exhausted
                while not exhausted and len(pending) < 2 * batch_size:
                    try:
                        src = next(source_iter)
                    except StopIteration:
                        exhausted = True
                        return
                    pending.append(pool.submit(self.decode, src, phash=phash, keep_image=need_image,
                                               cache=store, skip=skip, detect=decide))  # fmt: skip

            submit()
            try:
                while pending:
                    batch = [pending.popleft().result() for _ in range(min(batch_size, len(pending)))]
                    submit()  # the next images decode while the encoder runs on this batch
                    self.encode(batch, store)
                    if decide:
                        self.read(batch)
                        self.decide(batch, user_tags, options)
                    for item in batch:
                        if not keep_images:
                            item.image = item.patch = None
                        if on_item:
                            on_item()
                        yield item
            finally:
                if store is not None:
                    store.flush()  # also when the consumer stops early: what was computed is kept

    def process(
        self,
        source: Source,
        *,
        options: TagOptions | None = None,
        user_tags: Sequence[str] | None = None,
        decide: bool = True,
        phash: bool = False,
        keep_image: bool = False,
    ) -> Item:
        """One source through the whole road in the calling thread (a server request); the encoder
        batch is shared with concurrent callers once `share_batches` was called."""
        with self._decoding:
            item = self.decode(source, phash=phash, keep_image=keep_image or (decide and bool(self.readers)),
                               detect=decide)  # fmt: skip
        if item.ok:
            self.encode([item])
            if decide:
                self.read([item])
                self.decide([item], list(user_tags) if user_tags else None, options)
        if not keep_image:
            item.image = item.patch = None
        return item

    def tag_many(
        self,
        sources: Iterable[Source],
        *,
        user_tags: UserTags = None,
        options: TagOptions | None = None,
        progress: bool = False,
    ) -> Iterator[Item]:
        """Stream a tagged Item per source, in order; a bad image yields an Item with .error."""
        sources = list(sources) if progress else sources
        with ProgressBar(len(sources) if progress else 0) as bar:  # type: ignore[arg-type]
            yield from self.stream(sources, user_tags=user_tags, options=options, on_item=bar.advance)

    def tag(
        self, image: Source, *, user_tags: Sequence[str] | None = None, options: TagOptions | None = None
    ) -> list[Tag]:
        """Tags of one image (path, bytes or PIL image). Raises ImageError if it cannot be read."""
        item = next(self.stream([image], user_tags=list(user_tags) if user_tags else None, options=options))
        if item.error:
            raise ImageError(f"{item.source}: {item.error}")
        return item.tags

    def embed(self, sources: Iterable[Source], *, cache: bool = False, progress: bool = False) -> np.ndarray:
        """(N, D) float32 embeddings, in input order. Raises on the first unreadable image."""
        sources = list(sources)
        rows = []
        with ProgressBar(len(sources) if progress else 0) as bar:
            for item in self.stream(sources, decide=False, cache=cache, on_item=bar.advance):
                if item.error:
                    raise ImageError(f"{item.source}: {item.error}")
                rows.append(item.embedding)
        dim = self.encoder.spec.embedding_dim
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)


def user_tags_for(user_tags: UserTags, source: str) -> list[str] | None:
    if user_tags is None:
        return None
    if isinstance(user_tags, Mapping):
        found = user_tags.get(source)
        return list(found) if found is not None else None
    return list(user_tags)


def detector_workers(settings: Settings) -> int:
    """How many pictures the detector works on at once: the `threads` setting, else one per core (capped)."""
    return max(1, settings.threads or min(os.cpu_count() or 1, MAX_DETECTOR_WORKERS))


def load_detector(settings: Settings) -> Detector:
    """The detector the settings name, one ONNX Runtime thread per run (the tagger runs several pictures
    at once, see `detector_workers`); missing (not set up) is one line saying what to do."""
    from autotag.encoders.detector import create_detector

    try:
        return create_detector(settings.detector, threads=1)
    except AutotagError as exc:
        raise AutotagError(f"{exc}; or tag without objects: --no-objects (setting objects = false)") from None


def _upright_size(meta: dict[str, Any], im: Image.Image) -> tuple[int, int]:
    """The file's size in the decoded picture's orientation (EXIF may have turned it; JPEG draft
    decoding may have shrunk it): boxes are reported in these pixels."""
    full = max(int(meta.get("width") or 0), int(meta.get("height") or 0))
    scale = full / max(im.size) if full else 1.0
    return max(1, round(im.width * scale)), max(1, round(im.height * scale))


def _scaled_down(im: Image.Image, side: int) -> Image.Image:
    if max(im.size) <= side:
        return im
    scale = side / max(im.size)
    return im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BILINEAR,
                     reducing_gap=2.0)  # fmt: skip
