"""What the HTTP handlers call: tagging, ingesting, similar search and feedback over one library.

Blocking code only (the app runs it in worker threads). Models load once, lazily, under a lock.
The database is the source of truth; the vector index is derived from it: it is saved now and
then and on shutdown, and at start every stored image missing from it is re-embedded from its
file, so a crash loses no image and leaves no index entry without a row.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autotag.api.errors import ApiError
from autotag.ingest import ImageError, content_hash, decode_image, load_source
from autotag.types import AutotagError, Tag

if TYPE_CHECKING:
    from autotag.config import Settings
    from autotag.index.vector import VectorIndex
    from autotag.pipeline import Tagger
    from autotag.store.library import Library, StoredImage

log = logging.getLogger("autotag.api")

INDEX_SAVE_INTERVAL_S = 5.0  # the index on disk may trail the database by this much; start-up repairs it
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


@dataclass
class Analysis:
    """One uploaded image after decoding and the encoder."""

    content_hash: str
    meta: dict[str, Any]
    tags: list[Tag]
    embedding: np.ndarray
    hashtags: list[Tag]
    flagged: list[dict[str, Any]]
    out_of_domain: float | None


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("autotag")
    except Exception:  # noqa: BLE001 - an uninstalled checkout still serves
        return "0+unknown"


class Service:
    """The library service behind the HTTP API. Thread-safe; one per process."""

    def __init__(self, settings: Settings, *, db: str | None = None) -> None:
        self.settings = settings
        self.db = db
        self.version = _version()
        self._lock = threading.RLock()  # guards lazy loading
        self._index_lock = threading.RLock()  # the vector index is not thread-safe
        self._taggers: dict[str, Tagger] = {}
        self._library: Library | None = None
        self._index: VectorIndex | None = None
        self._index_dirty_since: float | None = None
        self._extras: dict[str, Any] | None = None
        self._thumbs: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._heavy = threading.BoundedSemaphore(max(1, settings.workers))  # caps decoded images in memory

    # ------------------------------------------------------------------ lazy resources
    @property
    def library(self) -> Library:
        if self._library is None:
            with self._lock:
                if self._library is None:
                    from autotag.store import open_library

                    self._library = open_library(self.db, data_dir=self.settings.data_dir)
        return self._library

    @property
    def default_model(self) -> str:
        return self.settings.model

    def tagger(self, model: str | None = None) -> Tagger:
        """The Tagger for `model` (a registered encoder, a model registered in the library, or the
        server's own model); each one is loaded once."""
        name = model or self.default_model
        found = self._taggers.get(name)
        if found is not None:
            return found
        with self._lock:
            if name not in self._taggers:
                self._taggers[name] = self._load_tagger(name)
            return self._taggers[name]

    def _load_tagger(self, name: str) -> Tagger:
        from autotag.encoders import list_encoders
        from autotag.pipeline import Tagger

        if name == self.default_model or name in list_encoders():
            target = name  # the server's own model may be a folder the operator chose
        else:
            stored = self.library.get_model(name)
            if stored is None:
                valid = sorted({*list_encoders(), *(m.name for m in self.library.list_models())})
                raise ApiError(400, "unknown model", f"no model {name!r}; valid: {', '.join(valid)}")
            target = stored.path
        started = time.perf_counter()
        overrides = {
            f.name: getattr(self.settings, f.name) for f in fields(self.settings) if f.name != "model"
        }
        tagger = Tagger.load(target, **overrides)
        log.info("loaded model %s in %.1f s", name, time.perf_counter() - started)
        return tagger

    def model_loaded(self) -> bool:
        return self.default_model in self._taggers

    def warm(self) -> None:
        """Load the default model and the index now instead of on the first request."""
        self.tagger()
        self.index()

    def close(self) -> None:
        with self._index_lock:
            if self._index is not None and self._index_dirty_since is not None:
                self._save_index()
        if self._library is not None:
            self._library.close()

    # ------------------------------------------------------------------ optional hashtag / audit features
    def extras(self) -> dict[str, Any]:
        """Hashtag suggester and user-tag audit (area D), when installed; the API works without them."""
        if self._extras is None:
            with self._lock:
                if self._extras is None:
                    self._extras = _load_extras()
        return self._extras

    # ------------------------------------------------------------------ analysis
    def analyze(
        self,
        data: bytes,
        *,
        user_tags: Sequence[str] = (),
        model: str | None = None,
        top_k: int | None = None,
        threshold: float | None = None,
    ) -> Analysis:
        from autotag.pipeline import TagOptions

        tagger = self.tagger(model)
        options = TagOptions(
            top_k=top_k or self.settings.top_k,
            threshold=self.settings.threshold if threshold is None else threshold,
        )
        with self._heavy:
            item = next(iter(tagger.encode_stream([data])))
        if item.error:
            raise ImageError(item.error)
        logits, embedding = item.logits[None], item.embedding[None]
        tags = tagger.tags_for(logits, embedding, [list(user_tags)] if user_tags else None, options)[0]
        hashtags, flagged, ood = self._hashtags_and_audit(tagger, logits, embedding, tags, user_tags)
        if tagger is not self.tagger() and tagger.encoder is not self.tagger().encoder:
            embedding = self.embed(data)[None]  # the library's index holds the default encoder's vectors
        meta = dict(item.meta)
        return Analysis(
            item.content_hash, meta, tags, embedding[0].astype(np.float32), hashtags, flagged, ood
        )

    def _hashtags_and_audit(
        self,
        tagger: Tagger,
        logits: np.ndarray,
        embedding: np.ndarray,
        tags: list[Tag],
        user_tags: Sequence[str],
    ) -> tuple[list[Tag], list[dict[str, Any]], float | None]:
        extras = self.extras()
        hashtags: list[Tag] = []
        flagged: list[dict[str, Any]] = []
        ood: float | None = None
        if tagger.model is not None or tagger.encoder.spec.num_logits != 1000:
            return hashtags, flagged, ood  # the suggester reads ImageNet probabilities
        try:
            if "suggest" in extras:
                hashtags, ood = extras["suggest"](logits, embedding)
            if user_tags and "audit" in extras:
                flagged = extras["audit"](list(user_tags), logits, embedding, tags)
        except AutotagError:
            raise
        except Exception:  # noqa: BLE001 - an optional feature must never fail the request
            log.exception("hashtag suggestion / tag audit failed; answering without them")
        return hashtags, flagged, ood

    def embed(self, data: bytes) -> np.ndarray:
        tagger = self.tagger()
        with self._heavy:
            item = next(iter(tagger.encode_stream([data])))
        if item.error:
            raise ImageError(item.error)
        return item.embedding.astype(np.float32)

    def tag(
        self,
        data: bytes,
        *,
        user_tags: Sequence[str] = (),
        model: str | None = None,
        top_k: int | None = None,
        threshold: float | None = None,
    ) -> dict[str, Any]:
        a = self.analyze(data, user_tags=user_tags, model=model, top_k=top_k, threshold=threshold)
        return {
            "model": model or self.default_model,
            "content_hash": a.content_hash,
            "width": a.meta.get("width", 0),
            "height": a.meta.get("height", 0),
            "tags": [t.to_dict() for t in a.tags],
            "hashtags": [t.to_dict() for t in a.hashtags],
            "flagged_user_tags": a.flagged,
            "out_of_domain": a.out_of_domain,
        }

    # ------------------------------------------------------------------ the library
    def blob_dir(self) -> Path:
        index_dir = self.library.index_dir
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

    def ingest(
        self, data: bytes, *, filename: str = "", user_tags: Sequence[str] = (), model: str | None = None
    ) -> dict[str, Any]:
        model_name = model or self.default_model
        digest = content_hash(data)
        existing = self.library.get_image_by_hash(digest)
        if existing is not None and self.library.predictions(existing.id, model=model_name):
            self._ensure_indexed(existing)
            out = self._image_dict(existing, model_name)
            out.update(created=False, hashtags=[], flagged_user_tags=[])
            return out
        a = self.analyze(data, user_tags=user_tags, model=model)
        source = self._write_blob(digest, a.meta.get("format", ""), data)
        image_id, created = self.library.ingest(
            digest,
            str(source),
            width=a.meta.get("width"),
            height=a.meta.get("height"),
            format=a.meta.get("format"),
            size_bytes=len(data),
            model=model_name,
            tags=a.tags,
            user_tags=list(user_tags) or None,
        )
        self._index_add([image_id], a.embedding[None])
        stored = self.library.get_image(image_id)
        if stored is None:  # deleted by a concurrent request in between
            raise ApiError(409, "conflict", f"image {image_id} was deleted while being stored; retry")
        out = self._image_dict(stored, model_name)
        out.update(created=created, hashtags=[t.to_dict() for t in a.hashtags], flagged_user_tags=a.flagged)
        return out

    def _require(self, image_id: int) -> StoredImage:
        image = self.library.get_image(image_id)
        if image is None:
            raise ApiError(404, "not found", f"image {image_id} is not in the library")
        return image

    def _image_dict(
        self, image: StoredImage, model: str | None = None, *, details: bool = True
    ) -> dict[str, Any]:
        out = image.to_dict()
        predictions = self.library.predictions(image.id)
        models = list(dict.fromkeys(p.model for p in predictions))
        chosen = (
            model
            if model in models
            else (self.default_model if self.default_model in models else (models[0] if models else None))
        )
        out["model"] = chosen
        out["tags"] = [p.to_tag().to_dict() for p in predictions if p.model == chosen]
        out["thumbnail_url"] = f"/v1/images/{image.id}/thumbnail?size=256"
        if details:
            out["user_tags"] = self.library.user_tags(image.id)
            out["feedback"] = [_feedback_dict(f) for f in self.library.feedback(image.id)]
        return out

    def get_image(self, image_id: int) -> dict[str, Any]:
        return self._image_dict(self._require(image_id))

    def list_images(self, *, tag: str | None = None, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        found = self.library.list_images(tag=tag, limit=limit + 1, offset=offset)
        items = [self._image_dict(im, details=False) for im in found[:limit]]
        return {
            "items": items,
            "limit": limit,
            "offset": offset,
            "next_offset": offset + limit if len(found) > limit else None,
            "tag": tag,
        }

    def delete_image(self, image_id: int) -> None:
        image = self._require(image_id)
        if not self.library.delete_image(image_id):
            raise ApiError(404, "not found", f"image {image_id} is not in the library")
        with self._index_lock:
            if self._index is not None:
                self._index.remove([image_id])
                self._mark_dirty()
        self._thumbs = OrderedDict((k, v) for k, v in self._thumbs.items() if k[0] != image_id)
        blob = Path(image.source)
        if (
            blob.parent.parent == self.blob_dir()
            and self.library.get_image_by_hash(image.content_hash) is None
        ):
            blob.unlink(missing_ok=True)

    def feedback(
        self,
        image_id: int,
        *,
        accept: Sequence[str] = (),
        reject: Sequence[str] = (),
        add: Sequence[str] = (),
        who: str | None = None,
    ) -> dict[str, Any]:
        self._require(image_id)
        actions = (
            [("accepted", t) for t in accept]
            + [("rejected", t) for t in reject]
            + [("added", t) for t in add]
        )
        actions = [(a, t.strip()[:200]) for a, t in actions if t and t.strip()]
        if not actions:
            raise ApiError(422, "invalid request", "give at least one tag in accept, reject or add")
        if len(actions) > 200:
            raise ApiError(422, "invalid request", "at most 200 tags per feedback request")
        for action, tag in actions:
            self.library.add_feedback(image_id, tag, action, who)
        return {
            "image_id": image_id,
            "stored": len(actions),
            "feedback": [_feedback_dict(f) for f in self.library.feedback(image_id)],
        }

    def thumbnail(self, image_id: int, size: int) -> bytes:
        key = (image_id, size)
        if key in self._thumbs:
            return self._thumbs[key]
        image = self._require(image_id)
        try:
            data = load_source(image.source)
        except ImageError as exc:
            raise ApiError(404, "not found", f"the file of image {image_id} is gone ({exc})") from exc
        with self._heavy:
            im = decode_image(data, min_side=size, max_pixels=self.settings.max_pixels)
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=85)
        out = buf.getvalue()
        self._thumbs[key] = out
        while len(self._thumbs) > THUMBNAIL_CACHE:
            self._thumbs.popitem(last=False)
        return out

    # ------------------------------------------------------------------ similar images and the index
    def similar(
        self, *, data: bytes | None = None, image_id: int | None = None, k: int = 10
    ) -> dict[str, Any]:
        if image_id is not None:
            image = self._require(image_id)
            vector = self._stored_vector(image)
        else:
            assert data is not None
            vector = self.embed(data)
        index = self.index()
        with self._index_lock:
            scores, ids = index.search(vector[None], k + (1 if image_id is not None else 0))
        results = []
        for score, hit in zip(scores[0], ids[0], strict=True):
            if hit < 0 or int(hit) == image_id:
                continue
            stored = self.library.get_image(int(hit))
            if stored is None:
                continue  # deleted meanwhile
            item = self._image_dict(stored, details=False)
            results.append(
                {
                    "id": stored.id,
                    "score": float(score),
                    "source": stored.source,
                    "thumbnail_url": item["thumbnail_url"],
                    "tags": item["tags"],
                }
            )
        return {"query_id": image_id, "results": results[:k]}

    def _stored_vector(self, image: StoredImage) -> np.ndarray:
        try:
            return self.embed(load_source(image.source))
        except ImageError as exc:
            raise ApiError(
                404, "not found", f"the file of image {image.id} is gone or unreadable ({exc})"
            ) from exc

    def index(self) -> VectorIndex:
        """The vector index, loaded (or built) and reconciled with the database on first use."""
        if self._index is None:
            with self._index_lock:
                if self._index is None:
                    self._index = self._open_index()
        return self._index

    def _index_dir(self) -> Path:
        return self.library.index_dir / self.tagger().encoder.spec.name

    def _open_index(self) -> VectorIndex:
        from autotag.index.vector import VectorIndex

        folder = self._index_dir()
        index = None
        if (folder / "index.json").is_file():
            try:
                index = VectorIndex.load(folder)
            except Exception as exc:  # noqa: BLE001 - a damaged index is rebuilt from the database
                log.warning("vector index in %s unreadable (%s); rebuilding it", folder, exc)
        if index is None:
            index = VectorIndex(self.tagger().encoder.spec.embedding_dim, "auto")
        self._index = index
        self._reconcile(index)
        return index

    def _reconcile(self, index: VectorIndex) -> None:
        """Make the index hold exactly the database's images: drop stale ids, embed missing ones."""
        in_db = np.asarray(self.library.image_ids(), dtype=np.int64)
        in_index = index.ids()
        stale = in_index[~np.isin(in_index, in_db)]
        missing = in_db[~np.isin(in_db, in_index)]
        if len(stale):
            index.remove(stale)
        added = 0
        for start in range(0, len(missing), 64):
            chunk = [self.library.get_image(int(i)) for i in missing[start : start + 64]]
            chunk = [im for im in chunk if im is not None]
            items = list(self.tagger().encode_stream([im.source for im in chunk]))
            good = [(im.id, it.embedding) for im, it in zip(chunk, items, strict=True) if it.error is None]
            for im, it in zip(chunk, items, strict=True):
                if it.error is not None:
                    log.warning("image %s (%s) cannot be indexed: %s", im.id, im.source, it.error)
            if good:
                index.add([g[0] for g in good], np.stack([g[1] for g in good]))
                added += len(good)
        if len(stale) or added:
            log.info("vector index repaired: %d stale ids removed, %d images added", len(stale), added)
            self._mark_dirty()
            self._save_index()

    def _ensure_indexed(self, image: StoredImage) -> None:
        index = self.index()
        with self._index_lock:
            if image.id in index:
                return
        self._index_add([image.id], self._stored_vector(image)[None])

    def _index_add(self, ids: list[int], vectors: np.ndarray) -> None:
        index = self.index()
        with self._index_lock:
            index.add(ids, vectors)
            self._mark_dirty()
            if time.monotonic() - (self._index_dirty_since or 0) >= INDEX_SAVE_INTERVAL_S:
                self._save_index()

    def _mark_dirty(self) -> None:
        if self._index_dirty_since is None:
            self._index_dirty_since = time.monotonic()

    def _save_index(self) -> None:
        with self._index_lock:
            if self._index is not None:
                self._index.save(self._index_dir())
                self._index_dirty_since = None

    # ------------------------------------------------------------------ health
    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": "ok",
            "version": self.version,
            "model": self.default_model,
            "model_loaded": self.model_loaded(),
            "database": "unavailable",
            "images": None,
        }
        try:
            out["database"] = self.library.dialect
            out["images"] = self.library.count_images()
        except Exception as exc:  # noqa: BLE001 - health reports, it does not fail
            out["status"] = "degraded"
            out["database"] = f"error: {type(exc).__name__}"
        return out


def _feedback_dict(f: Any) -> dict[str, Any]:
    return {
        "tag": f.tag,
        "action": f.action,
        "who": f.who,
        "score": f.score,
        "created_at": f.created_at.isoformat(),
    }


def _load_extras() -> dict[str, Any]:
    """Adapters over area D's hashtag suggester and tag audit, when they are importable."""
    extras: dict[str, Any] = {}
    try:
        from autotag.taxonomy import hashtags as hashtag_module
    except ImportError:
        return extras
    suggester_factory: Callable[[], Any] | None = getattr(hashtag_module, "default_suggester", None)
    if suggester_factory is not None:
        try:
            suggester = suggester_factory()

            def suggest(logits: np.ndarray, embedding: np.ndarray) -> tuple[list[Tag], float | None]:
                from autotag.pipeline import softmax

                probs = softmax(logits)
                tags = suggester.suggest(probs, embeddings=embedding)[0]
                ood = None
                if hasattr(suggester, "out_of_domain"):
                    ood = float(np.asarray(suggester.out_of_domain(probs, embedding)).reshape(-1)[0])
                return list(tags), ood

            extras["suggest"] = suggest
        except Exception:  # noqa: BLE001 - optional
            log.exception("hashtag suggester unavailable")
    try:
        from autotag.taxonomy import audit as audit_module
    except ImportError:
        return extras
    audit_fn = getattr(audit_module, "audit_user_tags", None)
    if audit_fn is not None:

        def audit(
            user_tags: list[str], logits: np.ndarray, embedding: np.ndarray, tags: list[Tag]
        ) -> list[dict[str, Any]]:
            from autotag.pipeline import softmax

            found = audit_fn(user_tags, softmax(logits)[0], embedding[0])
            return [_flag_dict(f) for f in found]

        extras["audit"] = audit
    return extras


def _flag_dict(flag: Any) -> dict[str, Any]:
    if isinstance(flag, dict):
        return {
            "tag": str(flag.get("tag", "")),
            "reason": str(flag.get("reason", "")),
            "score": flag.get("score"),
        }
    return {
        "tag": str(getattr(flag, "tag", flag)),
        "reason": str(getattr(flag, "reason", "")),
        "score": getattr(flag, "score", None),
    }
