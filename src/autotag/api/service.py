"""What the HTTP handlers call: tagging, ingesting, similar search and feedback over one library.

Blocking code only (the app runs it in worker threads). Models load once, lazily, under a lock.
Images of concurrent requests share encoder batches (`EncoderBatcher`).

The database is the source of truth; the vector index (`autotag.library.LibraryIndex`, the same
one `autotag index` / `autotag similar` use) is derived from it. It is saved every few seconds and
on shutdown, and when the service opens it every stored image missing from it is re-embedded from
its file (and ids no longer stored are dropped), so a crash loses no image and leaves no orphan.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autotag.api.errors import ApiError
from autotag.ingest import ImageError, content_hash, decode_image, load_source
from autotag.types import AutotagError, Tag

if TYPE_CHECKING:
    from autotag.config import Settings
    from autotag.encoders import Encoder
    from autotag.library import LibraryIndex
    from autotag.pipeline import Tagger
    from autotag.store.library import Library, StoredImage

log = logging.getLogger("autotag.api")

# ONNX Runtime's memory arena grows to the largest batch it has run and keeps it: batch 32 of
# efficientnet_lite0 holds ~340 MB more than batch 1, batch 8 ~80 MB. 8 keeps most of the speed-up.
SERVE_MAX_BATCH = 8
INDEX_SAVE_INTERVAL_S = 5.0  # the index on disk may trail the database by this much; opening repairs it
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
    """One uploaded image after decoding, the encoder and the decision rule."""

    content_hash: str
    meta: dict[str, Any]
    tags: list[Tag]
    embedding: np.ndarray  # of the server's default encoder: what the library index holds
    phash: int
    hashtags: list[Tag]
    flagged: list[dict[str, Any]]
    out_of_domain: bool | None
    ood_score: float | None


@dataclass
class _Job:
    array: np.ndarray
    done: threading.Event
    logits: np.ndarray | None = None
    embedding: np.ndarray | None = None
    error: BaseException | None = None


class EncoderBatcher:
    """Runs one encoder on a worker thread; images that arrive while it is busy form its next batch.

    A lone request runs at once (no waiting for company); under load the batches grow up to
    `max_batch`, which costs each image less encoder time than running it alone.
    """

    def __init__(self, encoder: Encoder, max_batch: int) -> None:
        self.encoder = encoder
        self.max_batch = max(1, max_batch)
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self.batches = 0
        self.images = 0
        threading.Thread(target=self._loop, name=f"encoder-{encoder.spec.name}", daemon=True).start()

    def run(self, array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One preprocessed (3, S, S) image -> (logits, embedding) of that image."""
        job = _Job(array, threading.Event())
        self._queue.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.logits is not None and job.embedding is not None
        return job.logits, job.embedding

    def _loop(self) -> None:
        while True:
            jobs = [self._queue.get()]
            while len(jobs) < self.max_batch:
                try:
                    jobs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                logits, embeddings = self.encoder.run(np.stack([j.array for j in jobs]))
                for job, lg, emb in zip(jobs, logits, embeddings, strict=True):
                    job.logits, job.embedding = lg, emb
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting request
                for job in jobs:
                    job.error = exc
            self.batches += 1
            self.images += len(jobs)
            for job in jobs:
                job.done.set()


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
        self._taggers: dict[str, Tagger] = {}
        self._batchers: dict[int, EncoderBatcher] = {}
        self._library: Library | None = None
        self._index: LibraryIndex | None = None
        self._index_dirty_since: float | None = None
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
            # Clients name models; they never point the server at arbitrary folders.
            stored = self.library.get_model(name)
            if stored is None:
                valid = sorted({self.default_model, *list_encoders(), *(m.name for m in self.library.list_models())})
                raise ApiError(400, "unknown model", f"no model {name!r}; valid: {', '.join(valid)}")
            target = stored.path
        started = time.perf_counter()
        overrides = {f.name: getattr(self.settings, f.name) for f in fields(self.settings) if f.name != "model"}
        tagger = Tagger.load(target, **overrides)
        log.info("loaded model %s in %.1f s", name, time.perf_counter() - started)
        return tagger

    def _batcher(self, encoder: Encoder) -> EncoderBatcher:
        key = id(encoder)
        if key not in self._batchers:
            with self._lock:
                if key not in self._batchers:
                    self._batchers[key] = EncoderBatcher(encoder, min(self.settings.batch_size, SERVE_MAX_BATCH))
        return self._batchers[key]

    def model_loaded(self) -> bool:
        return self.default_model in self._taggers

    def warm(self) -> None:
        """Load the default model and the index now instead of on the first request."""
        self.tagger()
        self.index()

    def close(self) -> None:
        if self._index is not None:
            with self._index.lock:
                if self._index_dirty_since is not None:
                    self._save_index()
        if self._library is not None:
            self._library.close()

    # ------------------------------------------------------------------ analysis
    def _decode(self, data: bytes, tagger: Tagger) -> tuple[str, dict[str, Any], np.ndarray, int]:
        """bytes -> (content hash, metadata, preprocessed array, perceptual hash). Raises ImageError."""
        from autotag.index.duplicates import phash
        from autotag.pipeline import read_image

        with self._heavy:
            digest, im, meta = read_image(data, tagger.settings, tagger.encoder.spec.input_size)
            return digest, meta, tagger.encoder.preprocess(im), phash(im)

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
        digest, meta, array, hash64 = self._decode(data, tagger)
        logits, embedding = self._batcher(tagger.encoder).run(array)
        logits, embedding = logits[None], embedding[None]
        tags = tagger.tags_for(logits, embedding, [list(user_tags)] if user_tags else None, options)[0]
        hashtags, flagged, ood, ood_score = self._hashtags_and_audit(tagger, logits, user_tags)
        default = self.tagger()
        if tagger.encoder is not default.encoder:  # the library's index holds the default encoder's vectors
            embedding = self._batcher(default.encoder).run(self._decode(data, default)[2])[1][None]
        return Analysis(digest, meta, tags, embedding[0].astype(np.float32), hash64, hashtags, flagged, ood, ood_score)

    def _hashtags_and_audit(
        self, tagger: Tagger, logits: np.ndarray, user_tags: Sequence[str]
    ) -> tuple[list[Tag], list[dict[str, Any]], bool | None, float | None]:
        """Hashtags and the audit of user tags (area D) read ImageNet probabilities: default model only.
        They are optional: when their modules are missing the API answers without them."""
        if tagger.model is not None or tagger.encoder.spec.label_set != "imagenet-1k":
            return [], [], None, None
        try:
            return self._suggest_and_audit(logits, user_tags)
        except AutotagError:
            raise
        except Exception:  # noqa: BLE001 - an optional feature never fails the request; the log says why
            log.exception("hashtag suggestion / user-tag audit failed; answering without them")
            return [], [], None, None

    def _suggest_and_audit(
        self, logits: np.ndarray, user_tags: Sequence[str]
    ) -> tuple[list[Tag], list[dict[str, Any]], bool | None, float | None]:
        try:
            from autotag.suggest.hashtags import default_suggester
        except ImportError:
            return [], [], None, None
        from autotag.pipeline import softmax

        probs = softmax(logits)
        suggester = default_suggester()
        hashtags = suggester.suggest(probs, logits=logits)[0]
        scores = suggester.ood_scores(logits)
        ood = bool(suggester.out_of_domain(logits)[0])
        ood_score = round(float(scores[0]), 4) if scores is not None else None
        flagged: list[dict[str, Any]] = []
        if user_tags:
            try:
                from autotag.suggest.audit import imagenet_auditor, imagenet_concepts
            except ImportError:
                return hashtags, flagged, ood, ood_score
            _, concept_scores = imagenet_concepts(probs)
            audits = imagenet_auditor().audit(concept_scores[0], list(user_tags))
            flagged = [
                {"tag": a.tag, "reason": a.evidence, "score": round(float(a.relevance), 4)} for a in audits if a.flagged
            ]
        return hashtags, flagged, ood, ood_score

    def embed(self, data: bytes) -> np.ndarray:
        """The default encoder's embedding of an image (what similar-search compares)."""
        tagger = self.tagger()
        array = self._decode(data, tagger)[2]
        return self._batcher(tagger.encoder).run(array)[1].astype(np.float32)

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
            "ood_score": a.ood_score,
        }

    def tag_into_file(
        self, data: bytes, *, replace: bool = False, **options: Any
    ) -> tuple[bytes, list[str], str]:
        """The upload with its tags written in as XMP dc:subject + IPTC Keywords, the tags, and its media type."""
        from autotag.keywords import embed_keywords

        names = [t["name"] for t in self.tag(data, **options)["tags"]]
        tagged = embed_keywords(data, names, replace=replace, name="upload")
        return tagged, names, "image/png" if tagged.startswith(b"\x89PNG") else "image/jpeg"

    # ------------------------------------------------------------------ the library
    def blob_dir(self) -> Path:
        """Where uploaded files are kept: beside the index folder (`library.images/` next to `library.db`)."""
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
        """Store, tag and index one upload. The same content again returns the stored image.

        Order matters for crashes: the file is written first (harmless if orphaned), then the image
        row with its predictions and user tags in one transaction, then the index entry (rebuilt
        from the file at the next start if the process dies before the index is saved).
        """
        model_name = model or self.default_model
        if model is not None:
            self.tagger(model)  # an unknown model is refused before anything else happens
        existing = self.library.get_image_by_hash(content_hash(data))
        if existing is not None and self.library.predictions(existing.id, model=model_name):
            self._ensure_indexed(existing)
            out = self._image_dict(existing, model_name)
            out.update(created=False, hashtags=[], flagged_user_tags=[])
            return out
        a = self.analyze(data, user_tags=user_tags, model=model)
        source = self._write_blob(a.content_hash, a.meta.get("format", ""), data)
        image_id, created = self.library.ingest(
            a.content_hash,
            str(source),
            width=a.meta.get("width"),
            height=a.meta.get("height"),
            format=a.meta.get("format"),
            size_bytes=len(data),
            model=model_name,
            tags=a.tags,
            user_tags=list(user_tags) or None,
        )
        self._index_add([image_id], a.embedding[None], [a.phash])
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

    def _image_dict(self, image: StoredImage, model: str | None = None, *, details: bool = True) -> dict[str, Any]:
        out = image.to_dict()
        predictions = self.library.predictions(image.id)
        models = list(dict.fromkeys(p.model for p in predictions))
        if model in models:
            chosen = model
        elif self.default_model in models:
            chosen = self.default_model
        else:
            chosen = models[0] if models else None
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
        index = self.index()
        with index.lock:
            index.remove([image_id])
            self._mark_dirty()
        for key in [k for k in list(self._thumbs) if k[0] == image_id]:
            self._thumbs.pop(key, None)
        blob = Path(image.source)
        if blob.parent.parent == self.blob_dir() and self.library.get_image_by_hash(image.content_hash) is None:
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
        given = [("accepted", accept), ("rejected", reject), ("added", add)]
        actions = [(action, t.strip()[:200]) for action, tags in given for t in tags if t and t.strip()]
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
        cached = self._thumbs.get(key)
        if cached is not None:
            return cached
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
    def similar(self, *, data: bytes | None = None, image_id: int | None = None, k: int = 10) -> dict[str, Any]:
        if image_id is not None:
            image = self._require(image_id)
            vector = self._stored_vector(image)
        else:
            assert data is not None
            vector = self.embed(data)
        index = self.index()
        with index.lock:
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
            raise ApiError(404, "not found", f"the file of image {image.id} is gone or unreadable ({exc})") from exc

    def index(self) -> LibraryIndex:
        """The library's vector index, opened and reconciled with the database on first use."""
        if self._index is None:
            with self._lock:
                if self._index is None:
                    from autotag.library import open_index

                    index = open_index(self.library, self.tagger())
                    with index.lock:
                        self._reconcile(index)
                    self._index = index
        return self._index

    def _reconcile(self, index: LibraryIndex) -> None:
        """Make the index hold exactly the database's images: drop stale ids, embed missing ones."""
        in_db = np.asarray(self.library.image_ids(), dtype=np.int64)
        in_index = index.raw.ids()
        stale = in_index[~np.isin(in_index, in_db)]
        missing = [int(i) for i in in_db[~np.isin(in_db, in_index)]]
        if len(stale):
            index.remove(stale)
        tagger, added = self.tagger(), 0
        for image_id in missing:
            image = self.library.get_image(image_id)
            if image is None:
                continue
            try:
                _, _, array, hash64 = self._decode(load_source(image.source), tagger)
            except ImageError as exc:
                log.warning("image %s (%s) cannot be indexed: %s", image_id, image.source, exc)
                continue
            embedding = self._batcher(tagger.encoder).run(array)[1]
            index.add(np.asarray([image_id], np.int64), embedding[None], [hash64])
            added += 1
        if len(stale) or added:
            log.info("vector index repaired: %d stale ids removed, %d images added", len(stale), added)
            index.save()

    def _ensure_indexed(self, image: StoredImage) -> None:
        index = self.index()
        with index.lock:
            if image.id in index:
                return
        try:
            _, _, array, hash64 = self._decode(load_source(image.source), self.tagger())
        except ImageError as exc:
            raise ApiError(404, "not found", f"the file of image {image.id} is gone or unreadable ({exc})") from exc
        embedding = self._batcher(self.tagger().encoder).run(array)[1]
        self._index_add([image.id], embedding[None], [hash64])

    def _index_add(self, ids: list[int], vectors: np.ndarray, hashes: list[int]) -> None:
        index = self.index()
        with index.lock:
            index.add(np.asarray(ids, np.int64), vectors, hashes)
            self._mark_dirty()
            if time.monotonic() - (self._index_dirty_since or 0) >= INDEX_SAVE_INTERVAL_S:
                self._save_index()

    def _mark_dirty(self) -> None:
        if self._index_dirty_since is None:
            self._index_dirty_since = time.monotonic()

    def _save_index(self) -> None:
        if self._index is not None:
            with self._index.lock:
                self._index.save()
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
        except AutotagError as exc:
            out["status"] = "degraded"
            out["database"] = f"error: {exc}"
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
