"""What the HTTP handlers call: tagging one upload, and the library (`autotag.library.Library`, the
same object `autotag index` / `autotag similar` use) shaped into JSON.

Blocking code only (the app runs it in worker threads). The library loads models once, lazily, under a
lock; images of concurrent requests share encoder batches; when the service first opens the vector
index it is reconciled with the database, so a crash loses no image and leaves no orphan.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from autotag.api.errors import ApiError
from autotag.library import EmptyIndex, Library
from autotag.suggest.summary import suggestions_for
from autotag.types import AutotagError

if TYPE_CHECKING:
    from autotag.config import Settings
    from autotag.store import StoredImage


log = logging.getLogger("autotag.api")
FACET_KEYS = ("objects", "object_counts", "colors", "style", "properties")
# ONNX Runtime's memory arena grows to the largest batch it has run and keeps it: batch 32 of
# efficientnet_lite0 holds ~340 MB more than batch 1, batch 8 ~80 MB. 8 keeps most of the speed-up.
SERVE_MAX_BATCH = 8


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
        self._lock = threading.Lock()
        self._library: Library | None = None

    @property
    def library(self) -> Library:
        if self._library is None:
            with self._lock:
                if self._library is None:
                    self._library = Library.open(
                        self.db,
                        settings=self.settings,
                        reconcile=True,
                        share_batches=min(self.settings.batch_size, SERVE_MAX_BATCH),
                    )
        return self._library

    @property
    def default_model(self) -> str:
        return self.settings.model

    def model_loaded(self) -> bool:
        return self._library is not None and self.default_model in self._library.loaded_models()

    def warm(self) -> None:
        """Load the default model and the index now instead of on the first request."""
        _ = self.library.index

    def close(self) -> None:
        if self._library is not None:
            self._library.close()

    # ------------------------------------------------------------------ tagging
    def _options(self, top_k: int | None, threshold: float | None) -> Any:
        from autotag.pipeline import TagOptions

        return TagOptions(
            top_k=top_k or self.settings.top_k,
            threshold=self.settings.threshold if threshold is None else threshold,
        )

    def tag(
        self,
        data: bytes,
        *,
        user_tags: Sequence[str] = (),
        model: str | None = None,
        top_k: int | None = None,
        threshold: float | None = None,
    ) -> dict[str, Any]:
        tagger = self.library.tagger_for(model)
        item = tagger.process(data, options=self._options(top_k, threshold), user_tags=user_tags)
        if item.error is not None:
            from autotag.ingest import ImageError

            raise ImageError(item.error)
        if tagger.encoder.spec.name == self.library.tagger.encoder.spec.name:  # the library's learned tags too
            try:
                item.tags = [*item.tags, *self.library.learned_tags_for(item.embedding[None])[0]]
            except (AutotagError, OSError) as exc:  # tagging needs no database; without one, no learned tags
                log.warning("learned tags unavailable: %s", exc)
        record = item.to_dict()
        return {
            "model": model or self.default_model,
            "content_hash": item.content_hash,
            "width": item.meta.get("width", 0),
            "height": item.meta.get("height", 0),
            "tags": record["tags"],
            **{key: record[key] for key in FACET_KEYS if record.get(key) is not None},
            **suggestions_for(tagger, item, user_tags).to_dict(),
        }

    def tag_into_file(
        self, data: bytes, *, replace: bool = False, colors: bool = False, **options: Any
    ) -> tuple[bytes, list[str], str]:
        """The upload with its tags (and with `colors` its colour names) written in as XMP dc:subject +
        IPTC Keywords, the words written, and its media type."""
        from autotag.keywords import embed_keywords

        found = self.tag(data, **options)
        names = [t["name"] for t in found["tags"]] + ([c["name"] for c in found.get("colors", [])] if colors else [])
        tagged = embed_keywords(data, names, replace=replace, name="upload")
        return tagged, names, "image/png" if tagged.startswith(b"\x89PNG") else "image/jpeg"

    # ------------------------------------------------------------------ the library
    def ingest(
        self, data: bytes, *, filename: str = "", user_tags: Sequence[str] = (), model: str | None = None
    ) -> dict[str, Any]:
        """Store, tag and index one upload. The same content again returns the stored image."""
        upload = self.library.add_upload(data, user_tags=user_tags, model=model)
        out = self._image_dict(upload.image, model or self.default_model)
        out["created"] = upload.created
        tagger = self.library.tagger_for(model)
        # The same content again is not tagged again, but its suggestions are answered as /v1/tag would:
        # the model's outputs come back from the output cache.
        item = upload.item if upload.item is not None else tagger.process(data, decide=False)
        found = suggestions_for(tagger, item, user_tags).to_dict()
        out.update(hashtags=found["hashtags"], flagged_user_tags=found["flagged_user_tags"],
                   cannot_judge_user_tags=found["cannot_judge_user_tags"])  # fmt: skip
        flagged = [f["tag"] for f in found["flagged_user_tags"]]
        if flagged:  # kept as typed, but no longer found by tag search
            self.library.store.flag_user_tags(upload.image.id, flagged)
            out["accepted_tags"] = [t for t in out["accepted_tags"] if t not in flagged]
        return out

    def _image_dict(self, image: StoredImage, model: str | None = None, *, details: bool = True) -> dict[str, Any]:
        store = self.library.store
        out = image.to_dict()
        predictions = store.predictions(image.id)
        models = list(dict.fromkeys(p.model for p in predictions if p.model != store.LEARNED_MODEL))
        if model in models:
            chosen = model
        elif self.default_model in models:
            chosen = self.default_model
        else:
            chosen = models[0] if models else None
        out["model"] = chosen
        learned = store.LEARNED_MODEL
        out["tags"] = [p.to_tag().to_dict() for p in predictions if p.model == chosen and chosen != learned] + [
            p.to_tag().to_dict() for p in sorted(predictions, key=lambda p: -p.score) if p.model == learned
        ]
        out.update(self.library.facets(image.id) or {})
        out["thumbnail_url"] = f"/v1/images/{image.id}/thumbnail?size=256"
        feedback = store.feedback(image.id)
        out["accepted_tags"] = accepted_tags(out["tags"], store.user_tags(image.id),
                                             store.flagged_user_tags(image.id), feedback)
        if details:
            out["user_tags"] = store.user_tags(image.id)
            out["feedback"] = [_feedback_dict(f) for f in feedback]
        return out

    def get_image(self, image_id: int) -> dict[str, Any]:
        return self._image_dict(self.library.require(image_id))

    def list_images(self, *, limit: int = 50, offset: int = 0, **filters: str | None) -> dict[str, Any]:
        """A page of stored images matching every filter given (tag, color, style, object)."""
        found, total = self.library.find(limit=limit, offset=offset, **filters)
        items = [self._image_dict(im, details=False) for im in found]
        return {
            "items": items,
            "limit": limit,
            "offset": offset,
            "next_offset": offset + limit if offset + limit < total else None,
            "total": total,
            **filters,
        }

    def delete_image(self, image_id: int) -> None:
        self.library.delete(image_id)

    def feedback(
        self,
        image_id: int,
        *,
        accept: Sequence[str] = (),
        reject: Sequence[str] = (),
        add: Sequence[str] = (),
        who: str | None = None,
    ) -> dict[str, Any]:
        self.library.require(image_id)
        given = [("accepted", accept), ("rejected", reject), ("added", add)]
        actions = [(action, t.strip()[:200]) for action, tags in given for t in tags if t and t.strip()]
        if not actions:
            raise ApiError(422, "invalid request", "give at least one tag in accept, reject or add")
        if len(actions) > 200:
            raise ApiError(422, "invalid request", "at most 200 tags per feedback request")
        store = self.library.store
        for action, tag in actions:
            store.add_feedback(image_id, tag, action, who)
        return {
            "image_id": image_id,
            "stored": len(actions),
            "feedback": [_feedback_dict(f) for f in store.feedback(image_id)],
        }

    # ------------------------------------------------------------------ learned tags
    def learned_tags(self) -> dict[str, Any]:
        counts = self.library.store.learned_counts()
        return {"tags": [t.to_dict() | {"images": counts.get(t.name, 0)} for t in self.library.learned_tags()]}

    def teach(self, tag: str, examples: Sequence[int], rejections: Sequence[int], suggestions: int) -> dict[str, Any]:
        return self._learned_dict(self.library.teach(tag, list(examples), list(rejections), suggestions=suggestions))

    def learned_tag(self, tag: str, suggestions: int) -> dict[str, Any]:
        return self._learned_dict(self.library.learned(tag, suggestions=suggestions))

    def forget_tag(self, tag: str) -> None:
        self.library.forget_tag(tag)

    @staticmethod
    def _learned_dict(taught: Any) -> dict[str, Any]:
        out = taught.to_dict()
        for hit in (*out["images"], *out["suggestions"]):
            hit["thumbnail_url"] = f"/v1/images/{hit['id']}/thumbnail?size=256"
        return out

    def thumbnail(self, image_id: int, size: int) -> bytes:
        return self.library.thumbnail(image_id, size)

    def similar(self, *, data: bytes | None = None, image_id: int | None = None, k: int = 10) -> dict[str, Any]:
        query: bytes | int = image_id if image_id is not None else data  # type: ignore[assignment]
        try:
            hits = self.library.similar(query, k, include_query=image_id is None)
        except EmptyIndex:
            hits = []
        results = []
        for hit in hits:
            item = self._image_dict(hit.image, details=False)
            results.append(
                {
                    "id": hit.image.id,
                    "score": hit.score,
                    "source": hit.image.source,
                    "thumbnail_url": item["thumbnail_url"],
                    "tags": item["tags"],
                    "accepted_tags": item["accepted_tags"],
                }
            )
        return {"query_id": image_id, "results": results}

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
            store = self.library.store
            out["database"] = store.dialect
            out["images"] = store.count_images()
        except AutotagError as exc:
            out["status"] = "degraded"
            out["database"] = f"error: {exc}"
        except Exception as exc:  # noqa: BLE001 - health reports, it does not fail
            out["status"] = "degraded"
            out["database"] = f"error: {type(exc).__name__}"
        return out


def accepted_tags(tags: list[dict[str, Any]], typed: Sequence[str], flagged: Sequence[str],
                  feedback: Sequence[Any]) -> list[str]:
    """What the picture is tagged with once people have spoken (the same rule as search by tag): the
    latest judgement per tag wins; tags a person added or accepted first, then the model's leaf tags,
    its broader tags and the uploader's tags that were not flagged, less every tag a person rejected."""
    verdict: dict[str, str] = {}
    for f in sorted(feedback, key=lambda f: f.created_at):
        verdict[f.tag] = f.action
    given = [tag for tag, action in reversed(verdict.items()) if action in ("added", "accepted")]
    ranked = sorted(tags, key=lambda t: (t["kind"] == "ancestor", -t["score"]))
    names = [*given, *(t["name"] for t in ranked), *(x for x in typed if x not in flagged)]
    return [n for n in dict.fromkeys(names) if verdict.get(n) != "rejected"]


def _feedback_dict(f: Any) -> dict[str, Any]:
    return {
        "tag": f.tag,
        "action": f.action,
        "who": f.who,
        "score": f.score,
        "created_at": f.created_at.isoformat(),
    }
