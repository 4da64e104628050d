"""`Library`: one image collection, its database (autotag.store), its vector index (autotag.index) and
the tagger (autotag.pipeline) that fills both. The CLI, the HTTP API and the Parquet import all go
through it: ingest (always with tags), similar, duplicates, forget, delete, reconcile, thumbnails, maps.

The database is the source of truth; the vector index is derived from it. Local paths are stored
absolute and uploads are kept as content-addressed files beside the database (`<name>.images/`), so a
library can be served from any working folder.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autotag.config import Settings, load_settings
from autotag.heads.learned_tag import TARGET_PRECISION, LearnedTag, TeachingSpace, learned_tags, suggestion_order
from autotag.index.duplicates import DEFAULT_HASH_DISTANCE, DEFAULT_THRESHOLD, Fingerprint, find_duplicates
from autotag.index.library_index import LibraryIndex
from autotag.ingest import ImageError, Source, content_hash, decode_image, load_source, stored_location
from autotag.pipeline import Item, Tagger, TagOptions, UserTags, user_tags_for
from autotag.progress import ProgressBar
from autotag.store import open_store
from autotag.types import AutotagError, Tag
from autotag.usertags import parse_user_tags

if TYPE_CHECKING:
    from autotag.store import Store, StoredImage
    from autotag.store.records import StoredLearnedTag

log = logging.getLogger("autotag.library")

INDEX_SAVE_INTERVAL_S = 5.0  # a served library's index on disk may trail the database by this much
THUMBNAIL_CACHE = 256
EXTENSIONS = {
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "HEIF": ".heic",
}


def check_facet_filters(color: str | None, style: str | None, obj: str | None) -> None:
    """A colour, style or object the tagger can never give is a user's mistake, not an empty answer."""
    from autotag.read import COLOR_NAMES
    from autotag.read.style import STYLE_NAMES

    if color and color not in COLOR_NAMES:
        raise AutotagError(f"unknown colour {color!r}; valid: {', '.join(COLOR_NAMES)}")
    styles = ("art", *STYLE_NAMES)
    if style and style not in styles:
        raise AutotagError(f"unknown style {style!r}; valid: {', '.join(styles)}")
    if obj:
        from autotag.taxonomy.consumer import default_consumer

        words = sorted({e.label for e in default_consumer().coco.values()} | set(default_consumer().coco))
        if obj not in words:
            raise AutotagError(f"unknown object {obj!r}; valid: {', '.join(words)}")


def source_label(source: Source) -> str:
    return "<uploaded bytes>" if isinstance(source, bytes) else str(source)


class NotInLibrary(AutotagError):
    """No image with that id is stored."""


class UnknownLearnedTag(AutotagError):
    """No learned tag of that name."""


class FileGone(AutotagError):
    """A stored image's file can no longer be read."""


class EmptyIndex(AutotagError):
    """Nothing is indexed yet."""


class UnknownModel(AutotagError):
    """A model name that is neither the library's model, a registered encoder, nor a stored model."""


@dataclass
class IngestReport:
    added: int = 0  # newly indexed images
    skipped: int = 0  # already indexed (same content hash)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    ids: list[int] = field(default_factory=list)  # library ids of every readable source, in order
    skipped_files: list[tuple[str, int]] = field(default_factory=list)  # (source, id of the image it already is)

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "skipped": self.skipped,
            "skipped_files": [{"path": p, "same_as_image": i} for p, i in self.skipped_files],
            "failed": [{"path": p, "error": e} for p, e in self.failed],
        }


@dataclass(frozen=True)
class Hit:
    image: StoredImage
    score: float


@dataclass
class Teaching:
    """A learned tag after a change: its model, the stored images that now carry it (best first) and the
    ones it is least sure about (nearest its threshold first: a judgement there teaches it most). Hit
    scores are the model's confidence (LearnedTag.confidence: 0.5 at the threshold)."""

    tag: str
    version: int
    model: LearnedTag
    tagged: list[Hit]
    suggestions: list[Hit]

    def to_dict(self) -> dict[str, Any]:
        def hit(h: Hit) -> dict[str, Any]:
            return {"id": h.image.id, "path": h.image.source, "score": round(h.score, 4)}

        m = self.model
        return {
            "tag": self.tag,
            "version": self.version,
            "examples": m.examples,
            "rejections": m.rejections,
            "summary": m.summary(),
            "threshold": round(m.threshold, 4),
            "estimated_precision": m.estimated_precision,
            "images": [hit(h) for h in self.tagged],
            "suggestions": [hit(h) for h in self.suggestions],
        }


@dataclass
class Upload:
    """An uploaded image after `Library.add_upload`: the stored row, whether it is new, and (when it
    went through the pipeline) the item with its tags and encoder outputs."""

    image: StoredImage
    created: bool
    item: Item | None = None


class Library:
    """One image collection. Open with `Library.open(db)`; close when done (saves the index).

    model: the library's model (encoder name or model folder; default settings.model). Its encoder's
    embeddings fill the vector index and its tags are stored under this name.
    reconcile: when the index is first opened, make it hold exactly the stored images (a server does).
    share_batches: concurrent callers share encoder batches of up to this many images (a server does).
    """

    def __init__(
        self,
        store: Store | Callable[[], Store],
        *,
        settings: Settings | None = None,
        model: str | None = None,
        tagger: Tagger | None = None,
        kind: str = "auto",
        reconcile: bool = False,
        share_batches: int | None = None,
    ) -> None:
        # a callable opens the database on first use: tagging alone never needs it
        self._store: Store | None = None if callable(store) else store
        self._open_store = store if callable(store) else None
        self.settings = settings or load_settings()
        self.model_name = (tagger.model_name if tagger is not None else None) or model or self.settings.model
        self.kind = kind
        self._reconcile_on_open = reconcile
        self._share_batches = share_batches
        self._taggers: dict[str, Tagger] = {self.model_name: tagger} if tagger is not None else {}
        self._index: LibraryIndex | None = None
        self._dirty_since: float | None = None
        self._lock = threading.RLock()  # guards lazy loading
        self._thumbs: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._decoding = threading.BoundedSemaphore(max(1, self.settings.workers))  # decoded images in memory
        self._space: tuple[int, np.ndarray, np.ndarray, TeachingSpace] | None = None  # (size, ids, vectors, space)
        self._learned: tuple[tuple[int, int], dict[str, LearnedTag]] | None = None  # (store version, models)

    @classmethod
    def open(
        cls,
        db: str | None = None,
        *,
        model: str | None = None,
        tagger: Tagger | None = None,
        kind: str = "auto",
        reconcile: bool = False,
        share_batches: int | None = None,
        settings: Settings | None = None,
        create: bool = True,
    ) -> Library:
        """The library at `db` (a SQLite path or a postgresql:// URL); the database is opened, created
        and migrated on first use. create=False (commands that only read) makes a missing library an
        error instead."""
        settings = settings or load_settings()
        return cls(
            lambda: open_store(db, create=create, data_dir=settings.data_dir),
            settings=settings,
            model=model,
            tagger=tagger,
            kind=kind,
            reconcile=reconcile,
            share_batches=share_batches,
        )

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._index is not None:
            with self._index.lock:
                if self._index.dirty:
                    self._index.save()
        if self._store is not None:
            self._store.close()

    @property
    def store(self) -> Store:
        """The database (opened on first use)."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    assert self._open_store is not None
                    self._store = self._open_store()
        return self._store

    # ------------------------------------------------------------------ models and the index
    @property
    def tagger(self) -> Tagger:
        """The library's own tagger, loaded on first use."""
        return self.tagger_for(None)

    def loaded_models(self) -> list[str]:
        """Names of the models loaded so far (each is loaded once, however many callers asked at once)."""
        return list(self._taggers)

    def tagger_for(self, name: str | None) -> Tagger:
        """The tagger for `name`: the library's model (None), a registered encoder, or a model
        registered in the store; each is loaded once. Clients name models, they never point the
        library at arbitrary folders."""
        name = name or self.model_name
        found = self._taggers.get(name)
        if found is not None:
            return found
        with self._lock:
            if name not in self._taggers:
                self._taggers[name] = self._load_tagger(name)
            return self._taggers[name]

    def _load_tagger(self, name: str) -> Tagger:
        from autotag.encoders import list_encoders

        if name == self.model_name or name in list_encoders():
            target = name
        else:
            stored = self.store.get_model(name)
            if stored is None:
                valid = sorted({self.model_name, *list_encoders(), *(m.name for m in self.store.list_models())})
                raise UnknownModel(f"no model {name!r}; valid: {', '.join(valid)}")
            target = stored.path
        started = time.perf_counter()
        overrides = {f.name: getattr(self.settings, f.name) for f in fields(self.settings) if f.name != "model"}
        tagger = Tagger.load(target, **overrides)
        if self._share_batches:
            tagger.share_batches(self._share_batches)
        log.info("loaded model %s in %.1f s", name, time.perf_counter() - started)
        return tagger

    def _encoder_spec(self) -> Any:
        """The library encoder's spec: from the registry when the model is a registered encoder (opening
        the index for teaching or listing then loads no model), else from the loaded model."""
        from autotag.encoders import ENCODERS

        if self.model_name not in self._taggers and self.model_name in ENCODERS:
            return ENCODERS.get(self.model_name).spec
        return self.tagger.encoder.spec

    @property
    def index(self) -> LibraryIndex:
        """The vector index of the library's encoder (opened, and reconciled if asked, on first use)."""
        if self._index is None:
            with self._lock:
                if self._index is None:
                    spec = self._encoder_spec()
                    index = LibraryIndex(self.store.index_dir, spec.name, spec.embedding_dim, self.kind)
                    if self._reconcile_on_open:
                        with index.lock:
                            self._reconcile(index)
                    self._index = index
        return self._index

    def use_index(self, encoder_name: str, dim: int) -> LibraryIndex:
        """Open the index for vectors of `encoder_name` without loading a model (the Parquet import)."""
        with self._lock:
            if self._index is None:
                self._index = LibraryIndex(self.store.index_dir, encoder_name, dim, self.kind)
            elif (self._index.encoder_name, self._index.dim) != (encoder_name, dim):
                raise AutotagError(f"the index in {self.store.index_dir} holds {self._index.encoder_name} embeddings")
            return self._index

    def save(self) -> None:
        index = self._index
        if index is not None:
            with index.lock:
                index.save()
                self._dirty_since = None

    def _save_if_due(self) -> None:
        if self._dirty_since is None:
            self._dirty_since = time.monotonic()
        if time.monotonic() - self._dirty_since >= INDEX_SAVE_INTERVAL_S:
            self.save()

    def reconcile(self) -> tuple[int, int]:
        """Make the index hold exactly the stored images: drop ids no longer stored, embed stored
        images missing from it from their files. Returns (removed, added)."""
        index = self.index
        with index.lock:
            return self._reconcile(index)

    def _reconcile(self, index: LibraryIndex) -> tuple[int, int]:
        in_db = np.asarray(self.store.image_ids(), dtype=np.int64)
        in_index = index.ids()
        stale = in_index[~np.isin(in_index, in_db)]
        if len(stale):
            index.remove(stale)
        missing = [im for i in in_db[~np.isin(in_db, in_index)] if (im := self.store.get_image(int(i))) is not None]
        ids, vectors, hashes = [], [], []
        for image, item in zip(missing, self.tagger.stream([m.source for m in missing], decide=False, phash=True),
                               strict=True):  # fmt: skip
            if item.error:
                log.warning("image %s (%s) cannot be indexed: %s", image.id, image.source, item.error)
                continue
            ids.append(image.id)
            vectors.append(item.embedding)
            hashes.append(item.fingerprint or item.phash or 0)
        if ids:
            index.add(np.asarray(ids, np.int64), np.stack(vectors), hashes)
        if len(stale) or ids:
            self._space = None
            log.info("vector index repaired: %d stale ids removed, %d images added", len(stale), len(ids))
            index.save()
        return len(stale), len(ids)

    # ------------------------------------------------------------------ adding images
    def ingest(
        self,
        sources: Iterable[Source],
        *,
        user_tags: UserTags = None,
        options: TagOptions | None = None,
        head: str | Path | None = None,
        progress: bool = False,
    ) -> IngestReport:
        """Tag and add images (paths, URLs, bytes or PIL images): rows, tags and vector index.

        Content already indexed with this model's tags is skipped by hash before it is decoded; a
        bad file is reported and the batch goes on. `head`: a retrieval-head folder to use for
        similar-search from now on.
        """
        sources = list(sources)
        index, batch = self.index, max(1, self.settings.batch_size)
        report = IngestReport()
        with index.lock, ProgressBar(len(sources) if progress else 0, "indexing") as bar:
            if head is not None:
                index.set_head(head)
            items = self.tagger.stream(sources, user_tags=user_tags, options=options, phash=True,
                                       skip=self._indexed_with_tags, on_item=bar.advance)  # fmt: skip
            chunk: list[Item] = []
            for item in items:
                chunk.append(item)
                if len(chunk) >= batch:
                    self.add_items(chunk, self.model_name, report, user_tags=user_tags)
                    chunk = []
            self.add_items(chunk, self.model_name, report, user_tags=user_tags)
            self.save()
        return report

    def _indexed_with_tags(self, digest: str) -> bool:
        image = self.store.get_image_by_hash(digest)
        return image is not None and image.id in self.index and bool(self.store.predictions(image.id, self.model_name))

    def add_items(self, items: Sequence[Item], model: str, report: IngestReport, *, user_tags: UserTags = None) -> None:
        """Store items that went through a pipeline (here, or in a batch job) and index the new ones.

        Each image row is written with its tags and user tags in one transaction (all or nothing
        after a crash); then the new vectors go into the index (not saved here).
        """
        index = self.index if self._index is None else self._index
        new_ids: list[int] = []
        vectors, hashes = [], []
        for item in items:
            if item.error is not None:
                report.failed.append((item.source, item.error))
                continue
            if item.skipped:
                image = self.store.get_image_by_hash(item.content_hash)
                if image is None:  # deleted since the pipeline looked it up
                    report.failed.append((item.source, "deleted from the library while being indexed; retry"))
                else:
                    self.store.add_path(image.id, stored_location(item.source))  # a byte copy: one more path
                    report.ids.append(image.id)
                    report.skipped += 1
                    report.skipped_files.append((item.source, image.id))
                continue
            image_id, _ = self.store.ingest(
                item.content_hash,
                stored_location(item.source),
                width=item.meta.get("width"),
                height=item.meta.get("height"),
                format=item.meta.get("format"),
                size_bytes=item.meta.get("size_bytes"),
                model=model,
                tags=item.tags,
                user_tags=user_tags_for(user_tags, item.source),
                facets=item.facets(),
            )
            report.ids.append(image_id)
            if image_id in index or image_id in new_ids:
                report.skipped += 1
                report.skipped_files.append((item.source, image_id))
                continue
            new_ids.append(image_id)
            vectors.append(item.embedding)
            hashes.append(item.fingerprint or item.phash or 0)
        if new_ids:
            with index.lock:
                index.add(np.asarray(new_ids, np.int64), np.asarray(np.stack(vectors), np.float32), hashes)
            report.added += len(new_ids)
            self._space = None
            self._tag_learned(new_ids, np.stack(vectors))

    def add_upload(
        self,
        data: bytes,
        *,
        user_tags: Sequence[str] = (),
        model: str | None = None,
        options: TagOptions | None = None,
    ) -> Upload:
        """Store, tag and index one uploaded file. The same content again returns the stored image.

        Order matters for crashes: the file is written first (harmless if orphaned), then the image
        row with its tags and user tags in one transaction, then the index entry (rebuilt from the
        file by `reconcile` if the process dies before the index is saved).
        """
        tagger = self.tagger_for(model)  # an unknown model is refused before anything else happens
        label = model or self.model_name
        existing = self.store.get_image_by_hash(content_hash(data))
        if existing is not None and self.store.predictions(existing.id, model=label):
            self._ensure_indexed(existing)
            return Upload(existing, created=False)
        item = tagger.process(data, options=options, user_tags=user_tags, phash=True)
        if item.error is not None:
            raise ImageError(item.error)
        embedding = item.embedding
        if tagger.encoder is not self.tagger.encoder:  # the index holds the library encoder's vectors
            embedding = self._embed(data).embedding
        source = self._write_blob(item.content_hash, item.meta.get("format", ""), data)
        image_id, created = self.store.ingest(
            item.content_hash,
            str(source),
            width=item.meta.get("width"),
            height=item.meta.get("height"),
            format=item.meta.get("format"),
            size_bytes=len(data),
            model=label,
            tags=item.tags,
            user_tags=list(user_tags) or None,
            facets=item.facets(),
        )
        self._index_one(image_id, embedding, item.fingerprint or item.phash or 0)
        item.tags = [*item.tags, *self._tag_learned([image_id], np.asarray(embedding, np.float32)[None])[0]]
        stored = self.store.get_image(image_id)
        if stored is None:  # deleted by a concurrent request in between
            raise NotInLibrary(f"image {image_id} was deleted while being stored; retry")
        return Upload(stored, created, item)

    def _embed(self, source: Source) -> Item:
        item = self.tagger.process(source, decide=False, phash=True)
        if item.error is not None:
            raise ImageError(item.error)
        return item

    def _index_one(self, image_id: int, embedding: Any, print_: Fingerprint | int) -> None:
        index = self.index
        self._space = None
        with index.lock:
            if image_id in index:  # stored before (tags of another model): its vector is the same
                return
            index.add(np.asarray([image_id], np.int64), np.asarray(embedding, np.float32)[None], [print_])
            self._save_if_due()

    def _ensure_indexed(self, image: StoredImage) -> None:
        index = self.index
        with index.lock:
            if image.id in index:
                return
        item = self._embed_stored(image)
        self._index_one(image.id, item.embedding, item.fingerprint or item.phash or 0)

    def _embed_stored(self, image: StoredImage) -> Item:
        try:
            return self._embed(image.source)
        except ImageError as exc:
            raise FileGone(f"the file of image {image.id} is gone or unreadable ({exc})") from exc

    def blob_dir(self) -> Path:
        """Where uploaded files are kept: beside the index folder (`library.images/` next to `library.db`)."""
        index_dir = self.store.index_dir
        return index_dir.with_name(index_dir.name.removesuffix(".index") + ".images")

    def _write_blob(self, digest: str, fmt: str, data: bytes) -> Path:
        """Content-addressed copy of an upload: written to a temporary name, then renamed into place."""
        folder = self.blob_dir() / digest[:2]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{digest}{EXTENSIONS.get(str(fmt).upper(), '.img')}"
        if not path.exists():
            tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return path

    # ------------------------------------------------------------------ removing images
    def require(self, image_id: int) -> StoredImage:
        image = self.store.get_image(image_id)
        if image is None:
            raise NotInLibrary(f"image {image_id} is not in the library")
        return image

    def delete(self, image_id: int) -> None:
        """Delete an image: its row (with tags and feedback), its index entry, and its uploaded file."""
        image = self.require(image_id)
        if not self.store.delete_image(image_id):
            raise NotInLibrary(f"image {image_id} is not in the library")
        index = self.index
        self._space = None
        with index.lock:
            index.remove([image_id])
            self._save_if_due()
        for key in [k for k in list(self._thumbs) if k[0] == image_id]:
            self._thumbs.pop(key, None)
        blob = Path(image.source)
        if blob.parent.parent == self.blob_dir() and self.store.get_image_by_hash(image.content_hash) is None:
            blob.unlink(missing_ok=True)

    def forget(self, image_ids: Iterable[int]) -> int:
        """Remove images from the vector index (not from the database); returns how many were indexed."""
        index = self.index
        self._space = None
        with index.lock:
            removed = index.remove(image_ids)
            self.save()
        return removed

    # ------------------------------------------------------------------ reading
    def find(
        self,
        *,
        tag: str | None = None,
        color: str | None = None,
        style: str | None = None,
        object: str | None = None,  # noqa: A002 - the filter's public name
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[StoredImage], int]:
        """Stored images matching every given filter, newest first, and how many match in all.

        tag: a tag (predicted and not rejected, typed or added by a person); color: a palette name
        ("blue"); style: photo, art or an art style ("abstract"); object: a detected object ("person").
        A colour, style or object no picture can have is an error listing the valid ones.
        """
        check_facet_filters(color, style, object)
        filters = {"tag": tag or None, "color": color or None, "style": style or None, "object": object or None}
        return self.store.list_images(limit=limit, offset=offset, **filters), self.store.count_images(**filters)

    def describe(self, image: StoredImage) -> dict[str, Any]:
        """A stored image as one record: id, path, its tags from the library's model (else from the
        model that tagged it), then its learned tags, and its facets."""
        predictions = self.store.predictions(image.id)
        learned = self.store.LEARNED_MODEL
        models = list(dict.fromkeys(p.model for p in predictions if p.model != learned))
        chosen = self.model_name if self.model_name in models else (models[0] if models else None)
        return {
            "id": image.id,
            "path": image.source,
            "tags": [p.to_tag().to_dict() for p in predictions if p.model == chosen]
            + [p.to_tag().to_dict() for p in sorted(predictions, key=lambda p: -p.score) if p.model == learned],
            **(self.facets(image.id) or {}),
        }

    def facets(self, image_id: int) -> dict[str, Any] | None:
        """A stored image's objects, colours, style and properties (None when it has none stored)."""
        found = self.store.facets(image_id)
        return found.to_dict() if found is not None else None

    def _empty(self) -> EmptyIndex:
        return EmptyIndex(f"the library index in {self.store.index_dir} is empty; add images with `autotag index PATH`")

    def similar(self, query: Source | int | np.ndarray, k: int = 10, *, include_query: bool = False) -> list[Hit]:
        """The k stored images most similar to `query`: an image (path, URL, bytes, PIL), the id of a
        stored image, or an embedding. The query's own image is left out unless `include_query`."""
        if k <= 0:
            raise AutotagError(f"k must be positive, got {k}")
        stored = self.require(query) if isinstance(query, int) else None
        index = self.index
        if len(index) == 0:
            raise self._empty()
        own: int | None = None
        if isinstance(query, np.ndarray):
            vector = np.asarray(query, np.float32).reshape(1, -1)
        elif stored is not None:
            own = stored.id
            vector = self._embed_stored(stored).embedding[None]
        else:
            item = self._embed(query)  # type: ignore[arg-type]
            vector = item.embedding[None]
            found = self.store.get_image_by_hash(item.content_hash)
            own = found.id if found is not None else None
        skip = None if include_query else own
        with index.lock:
            scores, ids = index.search(vector, k + (skip is not None))
        hits = []
        for score, image_id in zip(scores[0], ids[0], strict=True):
            if image_id < 0 or int(image_id) == skip:
                continue
            image = self.store.get_image(int(image_id))
            if image is not None:  # else deleted after indexing
                hits.append(Hit(image, float(score)))
        return hits[:k]

    def duplicates(
        self, threshold: float = DEFAULT_THRESHOLD, *, max_hash_distance: int = DEFAULT_HASH_DISTANCE
    ) -> list[dict[str, Any]]:
        """Groups of near-duplicate stored images with the pairs (and similarities) that join them."""
        if not 0.0 < threshold <= 1.0:
            raise AutotagError(f"threshold must be in (0, 1], got {threshold}")
        index = self.index
        with index.lock:
            ids, vectors = index.vectors()
            prints = [index.prints.get(int(i), 0) for i in ids]
            groups = find_duplicates(
                ids, vectors, prints, threshold=threshold, max_hash_distance=max_hash_distance, index=index.raw
            )
        # exact copies first: one image (one content) seen at several paths
        out = [
            {
                "size": len(paths),
                "exact": True,
                "images": [{"id": image_id, "path": p} for p in paths],
                "pairs": [],
            }
            for image_id, paths in self.store.images_with_copies().items()
        ]
        for group in groups:
            images = {i: self.store.get_image(i) for i in group.ids}
            out.append(
                {
                    "size": len(group.ids),
                    "exact": group.exact,
                    "images": [{"id": i, "path": im.source if im else None} for i, im in images.items()],
                    "pairs": [p.to_dict() for p in group.pairs],
                }
            )
        return out

    def thumbnail(self, image_id: int, size: int) -> bytes:
        """A JPEG of a stored image, at most size x size (kept in a small in-memory cache)."""
        key = (image_id, size)
        cached = self._thumbs.get(key)
        if cached is not None:
            return cached
        image = self.require(image_id)
        try:
            data = load_source(image.source)
        except ImageError as exc:
            raise FileGone(f"the file of image {image_id} is gone ({exc})") from exc
        with self._decoding:
            im = decode_image(data, min_side=size, max_pixels=self.settings.max_pixels)
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=85)
        out = buf.getvalue()
        self._thumbs[key] = out
        while len(self._thumbs) > THUMBNAIL_CACHE:
            self._thumbs.popitem(last=False)
        return out

    def map(
        self,
        out_html: str | Path,
        *,
        out_png: str | Path | None = None,
        limit: int = 5000,
        seed: int = 0,
    ) -> dict[str, Any]:
        """Write the t-SNE map of (up to `limit`) indexed images; points are coloured by their top tag."""
        from autotag.index.projection import (
            THUMB_SIDE,
            project_2d,
            render_html,
            render_png,
            thumbnail_data_uri,
            thumbnail_sample,
        )

        index = self.index
        with index.lock:
            ids, vectors = index.vectors()
        if len(ids) == 0:
            raise self._empty()
        if len(ids) > limit:
            keep = np.sort(np.random.default_rng(seed).choice(len(ids), limit, replace=False))
            ids, vectors = ids[keep], vectors[keep]
        if index.head is not None:
            vectors = index.head(vectors)
        coords = project_2d(vectors, seed=seed)
        labels, titles, thumbs = [], [], []
        sample = set(thumbnail_sample(coords)) if out_png is not None else set()
        pictures = {}  # the PNG's thumbnails
        for row, image_id in enumerate(ids):
            image = self.store.get_image(int(image_id))
            preds = [p for p in self.store.predictions(int(image_id)) if p.kind != "ancestor"]
            user = self.store.user_tags(int(image_id))
            best = max(preds, key=lambda p: p.score).tag if preds else (user[0] if user else "")
            labels.append(best)
            titles.append(image.source if image else str(image_id))
            try:
                picture = decode_image(load_source(image.source), min_side=128) if image else None
                thumbs.append(thumbnail_data_uri(picture) if picture else None)
                if picture is not None and row in sample:
                    pictures[row] = picture.copy()
                    pictures[row].thumbnail((THUMB_SIDE, THUMB_SIDE))
            except AutotagError:  # a moved or unreadable file still gets its point, just no picture
                thumbs.append(None)
        render_html(coords, labels, titles, thumbs, out_html, title=f"autotag map: {len(ids)} images")
        if out_png is not None:
            render_png(coords, labels, out_png, title=f"autotag map: {len(ids)} images", thumbnails=pictures)
        return {"images": len(ids), "html": str(out_html), "png": str(out_png) if out_png else None}

    # ------------------------------------------------------------------ learned tags
    def learned_tag_name(self, tag: str) -> str:
        """The tag as it is stored: typed spelling kept, '#', outer and repeated spaces dropped."""
        names = parse_user_tags([tag])
        if len(names) != 1:
            raise AutotagError(f"not a tag: {tag!r}; give one word or phrase, e.g. `autotag teach sky ...`")
        return names[0]

    def resolve_images(self, images: Sequence[Source | int]) -> list[int]:
        """Library ids of images given as ids, paths, URLs or bytes. Every one is checked before any is
        added: an unknown id or an unreadable file is an error that changes nothing. Readable files not
        in the library yet are added to it (tagged and indexed)."""
        ids: list[int | None] = []
        new: list[Source] = []
        for image in images:
            if isinstance(image, (int, np.integer)):
                ids.append(self.require(int(image)).id)
                continue
            try:
                data = image if isinstance(image, bytes) else load_source(str(image))
                decode_image(data, min_side=8, max_pixels=self.settings.max_pixels)  # unreadable: fail now
            except ImageError as exc:
                raise ImageError(f"{source_label(image)}: {exc}") from exc
            found = self.store.get_image_by_hash(content_hash(data))
            ids.append(found.id if found is not None else None)
            if ids[-1] is None:
                new.append(image)
        if new:
            report = self.ingest(new)
            if report.failed:
                source, reason = report.failed[0]
                raise ImageError(f"{source}: {reason}")
            added = iter(report.ids)
            ids = [i if i is not None else next(added) for i in ids]
        return [int(i) for i in ids if i is not None]

    def _teaching_space(self) -> tuple[np.ndarray, np.ndarray, TeachingSpace]:
        """(ids, unit vectors, TeachingSpace) of the indexed images, rebuilt when the index changed."""
        index = self.index
        with index.lock:
            size = len(index)
            if self._space is None or self._space[0] != size:
                ids, vectors = index.vectors()
                if len(ids) == 0:
                    raise self._empty()
                self._space = (size, ids, vectors, TeachingSpace(vectors))
            return self._space[1], self._space[2], self._space[3]

    def teach(
        self,
        tag: str,
        examples: Sequence[Source | int] = (),
        rejections: Sequence[Source | int] = (),
        *,
        suggestions: int = 12,
        target_precision: float = TARGET_PRECISION,
    ) -> Teaching:
        """Show the library examples of `tag` (and pictures that are not), retrain its model, store the
        new version and tag the library with it. Images: library ids, or paths / bytes (added to the
        library when new). A tag needs at least one example in all; a picture judged again takes the
        new judgement."""
        name = self.learned_tag_name(tag)
        known = self.store.learned_tag(name)
        example_ids = self.resolve_images(examples)
        rejected_ids = self.resolve_images(rejections)
        both = set(example_ids) & set(rejected_ids)
        if both:
            raise AutotagError(f"image {min(both)} is given both as an example of {name!r} and as not one")
        kept = set(known.examples if known else ()) - set(rejected_ids)
        if not kept and not example_ids:
            raise AutotagError(f"teaching {name!r} needs at least one example picture (none given or kept)")
        stored = self.store.judge_for_tag(name, example_ids, rejected_ids)
        return self._retrain(stored, suggestions, target_precision)

    def untag(self, tag: str, images: Sequence[Source | int], *, suggestions: int = 12) -> Teaching:
        """Reject `images` for a learned tag (they lose it and teach the model what it is not)."""
        name = self.learned_tag_name(tag)
        if self.store.learned_tag(name) is None:
            raise self._unknown_learned(name)
        return self.teach(name, (), images, suggestions=suggestions)

    def learned(self, tag: str, *, suggestions: int = 12) -> Teaching:
        """A learned tag as it stands: its newest model, the images carrying it, its suggestions."""
        name = self.learned_tag_name(tag)
        stored = self.store.learned_tag(name)
        found = self.store.learned_model(name)
        if stored is None or found is None:
            raise self._unknown_learned(name)
        version, document = found
        model = LearnedTag.from_bytes(document.encode())
        return self._teaching(stored, version, model, suggestions)

    def learned_tags(self) -> list[StoredLearnedTag]:
        return self.store.learned_tags()

    def forget_tag(self, tag: str) -> None:
        """Remove a learned tag, its examples, models and predictions; the images stay."""
        name = self.learned_tag_name(tag)
        if not self.store.forget_learned_tag(name):
            raise self._unknown_learned(name)
        self._learned = None

    def _unknown_learned(self, name: str) -> AutotagError:
        known = [t.name for t in self.store.learned_tags()]
        listed = ", ".join(known) if known else "none yet; teach one with `autotag teach TAG PHOTO... --db LIB`"
        return UnknownLearnedTag(f"no learned tag {name!r}; learned tags: {listed}")

    def _retrain(self, stored: StoredLearnedTag, suggestions: int, target_precision: float) -> Teaching:
        ids, vectors, space = self._teaching_space()
        row = {int(i): r for r, i in enumerate(ids)}
        for image_id in (*stored.examples, *stored.rejections):  # judged but not indexed: index them first
            if image_id not in row:
                self._ensure_indexed(self.require(image_id))
                ids, vectors, space = self._teaching_space()
                row = {int(i): r for r, i in enumerate(ids)}
        ex_rows = [row[i] for i in stored.examples]
        rej_rows = [row[i] for i in stored.rejections]
        model = space.teach(stored.name, vectors[ex_rows], vectors[rej_rows] if rej_rows else None,
                            judged_rows=ex_rows + rej_rows, target_precision=target_precision)  # fmt: skip
        scores = space.scores(model)
        shown = model.confidence(scores)
        tagged = {int(ids[r]): float(shown[r]) for r in np.flatnonzero(scores >= model.threshold)}
        tagged |= {int(ids[r]): float(shown[r]) for r in ex_rows}
        for r in rej_rows:
            tagged.pop(int(ids[r]), None)
        version = self.store.save_learned_model(stored.name, model.to_bytes().decode(), examples=model.examples,
                                                rejections=model.rejections, tagged=tagged)  # fmt: skip
        self._learned = None
        return self._teaching(stored, version, model, suggestions, scores=scores)

    def _teaching(
        self,
        stored: StoredLearnedTag,
        version: int,
        model: LearnedTag,
        suggestions: int,
        scores: np.ndarray | None = None,
    ) -> Teaching:
        ids, vectors, space = self._teaching_space()
        if scores is None:
            scores = space.scores(model, vectors)
        shown = model.confidence(scores)
        judged = set(stored.examples) | set(stored.rejections)
        row_judged = [r for r, i in enumerate(ids) if int(i) in judged]
        rejected = set(stored.rejections)
        order = np.argsort(-scores, kind="stable")
        hits = []
        for r in order:
            image_id = int(ids[r])
            if image_id in rejected or (scores[r] < model.threshold and image_id not in stored.examples):
                continue
            image = self.store.get_image(image_id)
            if image is not None:
                hits.append(Hit(image, float(shown[r])))
        offered = []
        for r in suggestion_order(scores, model.threshold, row_judged)[: max(0, suggestions)]:
            image = self.store.get_image(int(ids[r]))
            if image is not None:
                offered.append(Hit(image, float(shown[r])))
        return Teaching(stored.name, version, model, hits, offered)

    def learned_models(self) -> dict[str, LearnedTag]:
        """The newest model of every learned tag, reloaded when another process has taught one."""
        version = self.store.learned_version()
        if self._learned is None or self._learned[0] != version:
            models = {n: LearnedTag.from_bytes(doc.encode()) for n, (_, doc) in self.store.learned_models().items()}
            self._learned = (version, models)
        return self._learned[1]

    def learned_tags_for(self, embeddings: np.ndarray) -> list[list[Tag]]:
        """The learned tags (kind "learned") each embedding earns, best first."""
        return learned_tags(self.learned_models(), embeddings)

    def _tag_learned(self, image_ids: Sequence[int], embeddings: np.ndarray) -> list[list[Tag]]:
        """Give new images the learned tags they earn, stored as predictions of the "learned" model."""
        if not self.learned_models():
            return [[] for _ in image_ids]
        found = self.learned_tags_for(embeddings)
        for image_id, tags in zip(image_ids, found, strict=True):
            if tags:
                self.store.add_predictions(int(image_id), self.store.LEARNED_MODEL, tags)
        return found
