"""The one orchestrator used by the CLI, the HTTP API and the distributed runner:
sources -> decode + preprocess (thread pool) -> batched ONNX encoder -> heads -> decisions.

Decoding runs in worker threads while the calling thread runs the encoder on the previous batch;
PIL and ONNX Runtime both release the GIL, so the two overlap on a multi-core machine.
"""

from __future__ import annotations

import hashlib
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from autotag.config import Settings, load_settings
from autotag.encoders import Encoder, create_encoder
from autotag.ingest import ImageError, content_hash, decode_with_info, load_source
from autotag.taxonomy.imagenet import imagenet_hierarchy
from autotag.types import AutotagError, Prediction, Tag

if TYPE_CHECKING:
    from autotag.artifact import TrainedModel

Source = str | Path | bytes | Image.Image
UserTags = Sequence[str] | Mapping[str, Sequence[str]] | None


@dataclass(frozen=True)
class TagOptions:
    top_k: int = Settings.top_k  # at most this many leaf labels
    threshold: float = Settings.threshold  # leaf labels below this score are dropped
    ancestors: bool = True  # add WordNet ancestors (default ImageNet model only)
    ancestor_threshold: float = 0.3  # an ancestor needs at least this much probability mass
    max_tags: int = 15


@dataclass
class Encoded:
    """One source after the encoder: its vectors, or the reason it failed."""

    source: str
    content_hash: str = ""
    logits: np.ndarray | None = None
    embedding: np.ndarray | None = None
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # format, width, height, size_bytes


def source_name(source: Source) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    return "<bytes>" if isinstance(source, bytes) else "<image>"


def read_image(
    source: Source, settings: Settings, min_side: int | None = None
) -> tuple[str, Image.Image, dict]:
    """Any source -> (content hash, upright RGB image, metadata). Raises ImageError."""
    if isinstance(source, Image.Image):
        im = source.convert("RGB")
        digest = hashlib.sha256(im.tobytes() + repr(im.size).encode()).hexdigest()
        return digest, im, {"format": "PIL", "width": im.width, "height": im.height, "size_bytes": 0}
    data = source if isinstance(source, bytes) else load_source(str(source))
    im, meta = decode_with_info(data, min_side=min_side, max_pixels=settings.max_pixels)
    return content_hash(data), im, meta


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def imagenet_tags(probs: np.ndarray, options: TagOptions) -> list[Tag]:
    """Leaf classes (top-k above the threshold) plus informative WordNet ancestors, best first."""
    h = imagenet_hierarchy()
    order = np.argsort(-probs)[: options.top_k]
    tags = [
        Tag(h.class_names[i], float(probs[i]), h.class_ids[i], "leaf")
        for i in order
        if probs[i] >= options.threshold
    ]
    if options.ancestors and tags:
        scores = h.ancestor_scores(probs[None])[0]
        for j in np.flatnonzero(scores >= max(options.ancestor_threshold, options.threshold)):
            tags.append(Tag(h.ancestor_names[j], float(scores[j]), h.ancestor_ids[j], "ancestor"))
    best: dict[str, Tag] = {}
    for t in sorted(tags, key=lambda t: -t.score):  # two synsets may share a name: keep the stronger
        best.setdefault(t.name, t)
    return list(best.values())[: options.max_tags]


class Tagger:
    """Tags images with the default ImageNet model or a trained model folder.

    >>> tagger = Tagger.default()
    >>> [t.name for t in tagger.tag("cat.jpg")][:3]
    """

    def __init__(self, encoder: Encoder, model: TrainedModel | None = None, settings: Settings | None = None):
        self.encoder = encoder
        self.model = model
        self.settings = settings or load_settings()

    @classmethod
    def load(cls, model: str | None = None, **settings_overrides: Any) -> Tagger:
        """`model`: a registered encoder name (see `autotag models`) or a trained model folder."""
        settings = load_settings(**settings_overrides)
        name = model or settings.model
        if Path(name).is_dir():
            from autotag.artifact import load_model

            trained = load_model(name)
            return cls(trained.make_encoder(settings.threads), trained, settings)
        if "/" in name or name.startswith("."):
            raise AutotagError(f"model folder {name} does not exist")
        return cls(create_encoder(name, threads=settings.threads), None, settings)

    @classmethod
    def default(cls) -> Tagger:
        return cls.load()

    @property
    def model_name(self) -> str:
        return str(self.model.path) if self.model is not None else self.encoder.spec.name

    # -- the batched core -------------------------------------------------------------------------
    def _prepare(self, source: Source, cache: Any) -> Encoded | tuple[Encoded, np.ndarray]:
        item = Encoded(source_name(source))
        try:
            if cache is not None and isinstance(source, (str, Path, bytes)):
                data = source if isinstance(source, bytes) else load_source(str(source))
                item.content_hash = content_hash(data)
                found, vectors = cache.get([item.content_hash])
                if found[0]:
                    item.embedding = vectors[0]
                    return item
                source = data
            digest, im, item.meta = read_image(source, self.settings, self.encoder.spec.input_size)
            item.content_hash = item.content_hash or digest
            return item, self.encoder.preprocess(im)
        except ImageError as exc:
            item.error = str(exc)
            return item

    def encode_stream(
        self, sources: Iterable[Source], *, cache: Any = None, on_item: Callable[[], None] | None = None
    ) -> Iterator[Encoded]:
        """Yield one Encoded per source, in input order; bad sources carry their error."""
        batch_size, workers = self.settings.batch_size, max(1, self.settings.workers)
        with ThreadPoolExecutor(workers) as pool:
            pending: deque[Future] = deque()
            source_iter = iter(sources)
            exhausted = False
            while pending or not exhausted:
                while not exhausted and len(pending) < 2 * batch_size:
                    try:
                        pending.append(pool.submit(self._prepare, next(source_iter), cache))
                    except StopIteration:
                        exhausted = True
                ready = [pending.popleft().result() for _ in range(min(batch_size, len(pending)))]
                to_run = [r for r in ready if isinstance(r, tuple)]
                if to_run:
                    logits, embeddings = self.encoder.run(np.stack([arr for _, arr in to_run]))
                    for (item, _), lg, emb in zip(to_run, logits, embeddings, strict=True):
                        item.logits, item.embedding = lg, emb
                    if cache is not None:
                        cache.put([item.content_hash for item, _ in to_run], embeddings)
                for r in ready:
                    if on_item:
                        on_item()
                    yield r[0] if isinstance(r, tuple) else r

    # -- decisions ---------------------------------------------------------------------------------
    def tags_for(
        self,
        logits: np.ndarray,
        embeddings: np.ndarray,
        user_tags: list[list[str]] | None = None,
        options: TagOptions | None = None,
    ) -> list[list[Tag]]:
        """Encoder outputs of a batch -> tags per image."""
        options = options or TagOptions(self.settings.top_k, self.settings.threshold)
        if self.model is None:
            return [imagenet_tags(p, options) for p in softmax(logits)]
        # the stored rule is usually top-k-predicted: k comes from the model's label-count head
        tags = self.model.tag(embeddings, logits, user_tags)
        return [row[: options.max_tags] for row in tags]

    def tag_many(
        self,
        sources: Iterable[Source],
        *,
        user_tags: UserTags = None,
        options: TagOptions | None = None,
        progress: bool = False,
    ) -> Iterator[Prediction]:
        """Stream a Prediction per source, in order; a bad image yields a Prediction with .error."""
        sources = list(sources) if progress else sources
        with ProgressBar(len(sources) if progress else 0) as bar:  # type: ignore[arg-type]
            for item in self.encode_stream(sources, on_item=bar.advance):
                pred = Prediction(item.source, item.content_hash, error=item.error, extra=dict(item.meta))
                if item.error is None:
                    tags = _user_tags_for(user_tags, item.source)
                    pred.tags = self.tags_for(
                        item.logits[None], item.embedding[None], [tags] if tags is not None else None, options
                    )[0]
                yield pred

    def tag(
        self, image: Source, *, user_tags: Sequence[str] | None = None, options: TagOptions | None = None
    ) -> list[Tag]:
        """Tags of one image (path, bytes or PIL image). Raises ImageError if it cannot be read."""
        pred = next(self.tag_many([image], user_tags=list(user_tags) if user_tags else None, options=options))
        if pred.error:
            raise ImageError(f"{pred.path}: {pred.error}")
        return pred.tags

    def embed(self, sources: Iterable[Source], *, cache: bool = False, progress: bool = False) -> np.ndarray:
        """(N, D) float32 embeddings, in input order. Raises on the first unreadable image."""
        spec = self.encoder.spec
        store = None
        if cache:
            from autotag.encoders.cache import EmbeddingCache

            store = EmbeddingCache(self.settings.cache_dir / "embeddings", spec.name, spec.embedding_dim)
        sources = list(sources)
        rows = []
        with ProgressBar(len(sources) if progress else 0) as bar:
            for item in self.encode_stream(sources, cache=store, on_item=bar.advance):
                if item.error:
                    raise ImageError(f"{item.source}: {item.error}")
                rows.append(item.embedding)
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0, spec.embedding_dim), np.float32)


def _user_tags_for(user_tags: UserTags, source: str) -> list[str] | None:
    if user_tags is None:
        return None
    if isinstance(user_tags, Mapping):
        found = user_tags.get(source)
        return list(found) if found is not None else None
    return list(user_tags)


class ProgressBar:
    """A rich progress bar on stderr; does nothing when total is 0 or stderr is not a terminal (rich
    would draw nothing there, and importing it costs a short run ~40 ms)."""

    def __init__(self, total: int, description: str = "images") -> None:
        self._bar = None
        if total and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._task = self._bar.add_task(description, total=total)

    def __enter__(self) -> ProgressBar:
        if self._bar:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar:
            self._bar.stop()

    def advance(self, n: int = 1) -> None:
        if self._bar:
            self._bar.advance(self._task, n)
