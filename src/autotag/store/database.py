"""`Store`: the image library's database on SQLite or PostgreSQL, through SQLAlchemy Core: images,
their predictions and user tags, feedback, and the model registry.

Writes run one transaction per call. On PostgreSQL the get-or-create of an image relies on
INSERT ... ON CONFLICT DO NOTHING, which waits for a concurrent insert of the same hash to finish.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from autotag.store import schema as t
from autotag.store.engine import NoLibrary, create_engine, resolve_url
from autotag.store.migrations import apply_migrations
from autotag.store.queries import TAG_QUERIES, upsert
from autotag.store.records import (
    PROPERTY_KEYS,
    StoredFacets,
    StoredFeedback,
    StoredImage,
    StoredLearnedTag,
    StoredModel,
    StoredPrediction,
    normal_action,
    now,
    tag_fields,
    utc,
)
from autotag.types import AutotagError, Tag

BOX_COLUMNS = ("x0", "y0", "x1", "y1")


def stored_object(row: Any) -> dict[str, Any]:
    """An image_objects row -> the record's shape (Detection.to_dict): box None and its source when
    the classifier alone named it."""
    out = {"name": row.name, "label": row.label, "score": row.score,
           "box": None if row.x0 is None else [row.x0, row.y0, row.x1, row.y1]}  # fmt: skip
    if row.source != "detector":
        out["source"] = row.source
    return out


class Store:
    """The library's database. Open it with `autotag.store.open_store(db)`; close it when done."""

    def __init__(self, engine: Engine, url: URL, index_dir: Path) -> None:
        self._engine = engine
        self.url = url
        self._index_dir = index_dir
        self.schema_version = 0

    # ---------------------------------------------------------------- opening and closing
    @classmethod
    def open(cls, db: str | None = None, *, create: bool = True, **settings_overrides: Any) -> Store:
        from autotag.config import load_settings

        settings = load_settings(**settings_overrides)
        url = resolve_url(db, settings.data_dir)
        engine, index_dir = create_engine(url, settings.data_dir, create=create)
        store = cls(engine, url, index_dir)
        try:
            if not create and not sa.inspect(engine).has_table("schema_version"):
                raise NoLibrary(f"no autotag library in {url.render_as_string(hide_password=True)}; check --db, "
                                "or make one with `autotag index PHOTOS --db ...`")
            store.schema_version = apply_migrations(engine)
        except sa.exc.OperationalError as exc:
            engine.dispose()
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise AutotagError(
                f"cannot open library {url.render_as_string(hide_password=True)}: {reason}; "
                "check the path or URL and that the server is running"
            ) from exc
        except BaseException:
            engine.dispose()
            raise
        return store

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    @property
    def index_dir(self) -> Path:
        """Folder for this library's vector index (created on first use)."""
        self._index_dir.mkdir(parents=True, exist_ok=True)
        return self._index_dir

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url.render_as_string(hide_password=True)!r})"

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            conn.execution_options(autotag_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            yield conn

    def integrity_problems(self) -> list[str]:
        """Empty when the database is sound: SQLite's own integrity and foreign-key checks, plus
        a search for rows whose image is gone (on any backend)."""
        problems: list[str] = []
        with self._read() as conn:
            if self.dialect == "sqlite":
                result = [r[0] for r in conn.exec_driver_sql("PRAGMA integrity_check")]
                problems += [] if result == ["ok"] else [f"integrity_check: {r}" for r in result]
                problems += [
                    f"foreign key broken: {tuple(r)}" for r in conn.exec_driver_sql("PRAGMA foreign_key_check")
                ]
            for table in (t.predictions, t.user_tags, t.feedback, *t.FACET_TABLES):
                orphans = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(table)
                    .where(~sa.exists().where(t.images.c.id == table.c.image_id))
                ).scalar()
                if orphans:
                    problems.append(f"{orphans} rows in {table.name} point to missing images")
        return problems

    # ---------------------------------------------------------------- images
    def _get_or_create_image(
        self, conn: Connection, content_hash: str, source: str, values: dict[str, Any]
    ) -> tuple[int, bool]:
        if not content_hash:
            raise AutotagError("an image needs its content hash (autotag.ingest.content_hash(bytes))")
        stmt = (
            upsert(self.dialect, t.images)
            .values(content_hash=content_hash, source=str(source), added_at=now(), **values)
            .on_conflict_do_nothing(index_elements=["content_hash"])
            .returning(t.images.c.id)
        )
        new_id = conn.execute(stmt).scalar()
        if new_id is not None:
            return int(new_id), True
        existing = conn.execute(sa.select(t.images.c.id).where(t.images.c.content_hash == content_hash)).scalar()
        if existing is None:  # deleted between our insert attempt and the select; vanishingly rare
            raise AutotagError(f"image {content_hash[:12]} changed while being stored; retry")
        return int(existing), False

    def add_image(
        self,
        content_hash: str,
        source: str,
        *,
        width: int | None = None,
        height: int | None = None,
        format: str | None = None,
        size_bytes: int | None = None,
    ) -> tuple[int, bool]:
        """Store an image by its content hash; the same content twice returns the first id and False."""
        values = {"width": width, "height": height, "format": format, "size_bytes": size_bytes}
        with self._write() as conn:
            return self._get_or_create_image(conn, content_hash, source, values)

    def ingest(
        self,
        content_hash: str,
        source: str,
        *,
        width: int | None = None,
        height: int | None = None,
        format: str | None = None,
        size_bytes: int | None = None,
        model: str | None = None,
        tags: Sequence[Tag | dict[str, Any]] = (),
        user_tags: Sequence[str] | None = None,
        facets: Mapping[str, Any] | None = None,
    ) -> tuple[int, bool]:
        """Image + its predictions + its user tags + its facets in ONE transaction: after a crash, all
        or nothing.

        Ingesting content already stored adds nothing, except predictions of a model the image has
        none from yet, user tags when it has none and facets when it has none. `facets`: objects,
        colors, style and properties in the shapes of the pipeline's records (Item.facets()).
        """
        values = {"width": width, "height": height, "format": format, "size_bytes": size_bytes}
        with self._write() as conn:
            image_id, created = self._get_or_create_image(conn, content_hash, source, values)
            conn.execute(upsert(self.dialect, t.image_paths).values(image_id=image_id, path=str(source))
                         .on_conflict_do_nothing())
            if model is not None and tags:
                has = (
                    not created
                    and conn.execute(
                        sa.select(sa.func.count())
                        .select_from(t.predictions)
                        .where(t.predictions.c.image_id == image_id, t.predictions.c.model == model)
                    ).scalar()
                )
                if not has:
                    self._insert_predictions(conn, image_id, model, tags)
            if user_tags:
                has = (
                    not created
                    and conn.execute(
                        sa.select(sa.func.count()).select_from(t.user_tags).where(t.user_tags.c.image_id == image_id)
                    ).scalar()
                )
                if not has:
                    self._insert_user_tags(conn, image_id, user_tags)
            if facets and any(facets.values()):
                has = not created and conn.execute(
                    sa.select(t.image_facets.c.image_id).where(t.image_facets.c.image_id == image_id)
                ).first()
                if not has:
                    self._insert_facets(conn, image_id, model, facets)
            return image_id, created

    def add_path(self, image_id: int, path: str) -> None:
        """Remember another path of an image's content (a byte copy elsewhere); nothing if known."""
        with self._write() as conn:
            conn.execute(upsert(self.dialect, t.image_paths).values(image_id=int(image_id), path=str(path))
                         .on_conflict_do_nothing())

    def paths(self, image_id: int) -> list[str]:
        """Every path this content was seen at, the first (images.source) first."""
        image = self.get_image(image_id)
        with self._read() as conn:
            seen = conn.execute(sa.select(t.image_paths.c.path).where(t.image_paths.c.image_id == int(image_id))
                                .order_by(t.image_paths.c.path)).scalars()
            rest = [p for p in seen if image is None or p != image.source]
        return ([image.source] if image else []) + rest

    def images_with_copies(self) -> dict[int, list[str]]:
        """Images seen at more than one path (byte-identical copies): id -> paths, the first first."""
        several = (sa.select(t.image_paths.c.image_id).group_by(t.image_paths.c.image_id)
                   .having(sa.func.count() > 1))
        with self._read() as conn:
            ids = [int(i) for i in conn.execute(several).scalars()]
        return {i: self.paths(i) for i in sorted(ids)}

    def get_image(self, image_id: int) -> StoredImage | None:
        with self._read() as conn:
            row = conn.execute(sa.select(t.images).where(t.images.c.id == int(image_id))).first()
        return StoredImage.from_row(row) if row else None

    def get_image_by_hash(self, content_hash: str) -> StoredImage | None:
        with self._read() as conn:
            row = conn.execute(sa.select(t.images).where(t.images.c.content_hash == content_hash)).first()
        return StoredImage.from_row(row) if row else None

    def list_images(
        self,
        tag: str | None = None,
        limit: int = 50,
        offset: int = 0,
        *,
        color: str | None = None,
        style: str | None = None,
        object: str | None = None,  # noqa: A002 - the filter's public name
    ) -> list[StoredImage]:
        """Newest first, matching every filter given. `tag`: images predicted with it (by name or id)
        unless a person rejected it, plus images whose uploader typed it or a person added or accepted
        it. `color`: a dominant colour's name. `style`: photo, art or an art style. `object`: a detected
        object's word or detector class."""
        page = {"limit": max(0, int(limit)), "offset": max(0, int(offset))}
        statement, _, params = TAG_QUERIES.filtered({"tag": tag, "color": color, "style": style, "object": object})
        with self._read() as conn:
            return [StoredImage.from_row(r) for r in conn.execute(statement, {**params, **page})]

    def count_images(
        self,
        tag: str | None = None,
        *,
        color: str | None = None,
        style: str | None = None,
        object: str | None = None,  # noqa: A002 - the filter's public name
    ) -> int:
        _, statement, params = TAG_QUERIES.filtered({"tag": tag, "color": color, "style": style, "object": object})
        with self._read() as conn:
            return int(conn.execute(statement, params).scalar() or 0)

    def image_ids(self) -> list[int]:
        with self._read() as conn:
            return [int(i) for i in conn.execute(sa.select(t.images.c.id).order_by(t.images.c.id)).scalars()]

    def delete_image(self, image_id: int) -> bool:
        """Delete an image with its predictions, user tags and feedback; False if it was not there."""
        with self._write() as conn:
            return conn.execute(sa.delete(t.images).where(t.images.c.id == int(image_id))).rowcount > 0

    # ---------------------------------------------------------------- predictions and tags
    def _require_image(self, conn: Connection, image_id: int) -> None:
        if conn.execute(sa.select(t.images.c.id).where(t.images.c.id == int(image_id))).first() is None:
            raise AutotagError(f"image {image_id} is not in the library")

    def _insert_predictions(
        self, conn: Connection, image_id: int, model: str, tags: Iterable[Tag | dict[str, Any]]
    ) -> int:
        created = now()
        rows = []
        for rank, tag in enumerate(tags, start=1):
            name, tag_id, score, kind = tag_fields(tag)
            rows.append(
                {
                    "image_id": image_id,
                    "model": model,
                    "tag": name,
                    "tag_id": tag_id,
                    "score": score,
                    "rank": rank,
                    "kind": kind,
                    "created_at": created,
                }
            )
        if rows:
            conn.execute(sa.insert(t.predictions), rows)
        return len(rows)

    def _insert_user_tags(self, conn: Connection, image_id: int, tags: Iterable[str]) -> None:
        seen: dict[str, int] = {}
        for tag in tags:
            tag = str(tag).strip()
            if tag and tag not in seen:
                seen[tag] = len(seen)
        if seen:
            conn.execute(
                sa.insert(t.user_tags),
                [{"image_id": image_id, "tag": k, "position": v} for k, v in seen.items()],
            )

    def _insert_facets(self, conn: Connection, image_id: int, model: str | None, facets: Mapping[str, Any]) -> None:
        style, props = facets.get("style") or {}, facets.get("properties") or {}
        conn.execute(
            sa.insert(t.image_facets).values(
                image_id=image_id, model=model, kind=style.get("kind"), style=style.get("style"),
                style_score=style.get("score"), **{k: props.get(k) for k in PROPERTY_KEYS},
            )
        )  # fmt: skip
        colors = [
            {"image_id": image_id, "position": i, "name": c["name"], "share": float(c["share"]), "hex": c["hex"]}
            for i, c in enumerate(facets.get("colors") or [])
        ]
        if colors:
            conn.execute(sa.insert(t.image_colors), colors)
        objects = [
            {"image_id": image_id, "position": i, "name": o.get("name") or o["label"], "label": o["label"],
             "score": float(o["score"]), "source": o.get("source") or "detector",
             **dict(zip(BOX_COLUMNS, map(float, o["box"]) if o.get("box") else (None,) * 4, strict=True))}
            for i, o in enumerate(facets.get("objects") or [])
        ]  # fmt: skip
        if objects:
            conn.execute(sa.insert(t.image_objects), objects)

    def set_facets(self, image_id: int, model: str | None, facets: Mapping[str, Any]) -> None:
        """Replace an image's facets (objects, colors, style, properties as Item.facets() gives them)."""
        with self._write() as conn:
            self._require_image(conn, image_id)
            for table in (t.image_facets, t.image_colors, t.image_objects):
                conn.execute(sa.delete(table).where(table.c.image_id == int(image_id)))
            self._insert_facets(conn, int(image_id), model, facets)

    def facets(self, image_id: int) -> StoredFacets | None:
        """An image's stored facets, or None when it has none (added before facets, or by a batch without them)."""
        with self._read() as conn:
            row = conn.execute(sa.select(t.image_facets).where(t.image_facets.c.image_id == int(image_id))).first()
            if row is None:
                return None
            colors = conn.execute(
                sa.select(t.image_colors).where(t.image_colors.c.image_id == int(image_id)).order_by("position")
            )
            objects = conn.execute(
                sa.select(t.image_objects).where(t.image_objects.c.image_id == int(image_id)).order_by("position")
            )
            return StoredFacets(
                int(image_id),
                row.model,
                objects=[stored_object(o) for o in objects],
                colors=[{"name": c.name, "share": c.share, "hex": c.hex} for c in colors],
                style={"kind": row.kind, "style": row.style, "score": row.style_score} if row.style else None,
                properties={k: getattr(row, k) for k in PROPERTY_KEYS if getattr(row, k) is not None} or None,
            )  # fmt: skip

    def add_predictions(self, image_id: int, model: str, tags: Iterable[Tag | dict[str, Any]]) -> int:
        """Store `model`'s chosen tags for an image in rank order, replacing that model's earlier ones."""
        with self._write() as conn:
            self._require_image(conn, image_id)
            conn.execute(
                sa.delete(t.predictions).where(
                    t.predictions.c.image_id == int(image_id), t.predictions.c.model == model
                )
            )
            return self._insert_predictions(conn, int(image_id), model, tags)

    def predictions(self, image_id: int, model: str | None = None) -> list[StoredPrediction]:
        stmt = (
            sa.select(t.predictions)
            .where(t.predictions.c.image_id == int(image_id))
            .order_by(t.predictions.c.model, t.predictions.c.rank)
        )
        if model is not None:
            stmt = stmt.where(t.predictions.c.model == model)
        with self._read() as conn:
            return [StoredPrediction.from_row(r) for r in conn.execute(stmt)]

    def set_user_tags(self, image_id: int, tags: Iterable[str]) -> None:
        """Replace the tags the uploader typed (order kept, duplicates and blanks dropped)."""
        with self._write() as conn:
            self._require_image(conn, image_id)
            conn.execute(sa.delete(t.user_tags).where(t.user_tags.c.image_id == int(image_id)))
            self._insert_user_tags(conn, int(image_id), tags)

    def flag_user_tags(self, image_id: int, tags: Iterable[str]) -> None:
        """Mark typed tags that do not fit the picture: kept and shown, but no longer found by tag search."""
        names = [str(x).strip() for x in tags if str(x).strip()]
        if not names:
            return
        with self._write() as conn:
            conn.execute(sa.update(t.user_tags).where(t.user_tags.c.image_id == int(image_id),
                                                      t.user_tags.c.tag.in_(names)).values(flagged=True))

    def flagged_user_tags(self, image_id: int) -> list[str]:
        stmt = sa.select(t.user_tags.c.tag).where(t.user_tags.c.image_id == int(image_id), t.user_tags.c.flagged)
        with self._read() as conn:
            return list(conn.execute(stmt.order_by(t.user_tags.c.position)).scalars())

    def user_tags(self, image_id: int) -> list[str]:
        stmt = (
            sa.select(t.user_tags.c.tag).where(t.user_tags.c.image_id == int(image_id)).order_by(t.user_tags.c.position)
        )
        with self._read() as conn:
            return list(conn.execute(stmt).scalars())

    # ---------------------------------------------------------------- feedback
    def add_feedback(
        self,
        image_id: int,
        tag: str,
        action: str,
        who: str | None = None,
        *,
        model: str | None = None,
        score: float | None = None,
    ) -> StoredFeedback:
        """Record that a person accepted, rejected or added a tag.

        The score the model gave the tag is kept with the feedback (looked up from the stored
        predictions when not given) so thresholds can be re-fitted later even if predictions change.
        """
        normal = normal_action(action)
        tag = str(tag).strip()
        if not tag:
            raise AutotagError("feedback needs a tag name")
        with self._write() as conn:
            self._require_image(conn, image_id)
            if score is None or model is None:
                stmt = (
                    sa.select(t.predictions.c.model, t.predictions.c.score)
                    .where(
                        t.predictions.c.image_id == int(image_id),
                        sa.or_(t.predictions.c.tag == tag, t.predictions.c.tag_id == tag),
                    )
                    .order_by(t.predictions.c.id.desc())
                )
                if model is not None:
                    stmt = stmt.where(t.predictions.c.model == model)
                found = conn.execute(stmt).first()
                if found is not None:
                    model = model or found.model
                    score = found.score if score is None else score
                elif model is None:  # a tag the model missed counts against the one model that tagged it
                    models = conn.execute(
                        sa.select(t.predictions.c.model).where(t.predictions.c.image_id == int(image_id)).distinct()
                    ).scalars()
                    models = list(models)
                    model = models[0] if len(models) == 1 else None
            row = conn.execute(
                sa.insert(t.feedback)
                .values(
                    image_id=int(image_id),
                    tag=tag,
                    action=normal,
                    who=who,
                    model=model,
                    score=score,
                    created_at=now(),
                )
                .returning(*t.feedback.c)
            ).one()
            return StoredFeedback.from_row(row)

    def feedback(
        self,
        image_id: int | None = None,
        *,
        model: str | None = None,
        tag: str | None = None,
        action: str | None = None,
    ) -> list[StoredFeedback]:
        """Feedback in the order it was given, optionally filtered."""
        stmt = sa.select(t.feedback).order_by(t.feedback.c.id)
        if image_id is not None:
            stmt = stmt.where(t.feedback.c.image_id == int(image_id))
        if model is not None:
            stmt = stmt.where(t.feedback.c.model == model)
        if tag is not None:
            stmt = stmt.where(t.feedback.c.tag == tag)
        if action is not None:
            stmt = stmt.where(t.feedback.c.action == normal_action(action))
        with self._read() as conn:
            return [StoredFeedback.from_row(r) for r in conn.execute(stmt)]

    # ---------------------------------------------------------------- models
    def register_model(
        self, name: str, path: str | Path, config: dict[str, Any] | None = None, *, activate: bool = True
    ) -> StoredModel:
        """Record a new version of model `name` (1, 2, ...); older versions are kept, and made
        inactive when this one is activated."""
        with self._write() as conn:
            if self.dialect == "postgresql":  # serialise version numbering per name
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": name})
            latest = conn.execute(sa.select(sa.func.max(t.models.c.version)).where(t.models.c.name == name)).scalar()
            if activate:
                conn.execute(sa.update(t.models).where(t.models.c.name == name).values(active=False))
            row = conn.execute(
                sa.insert(t.models)
                .values(
                    name=name,
                    version=(latest or 0) + 1,
                    path=str(path),
                    config=json.dumps(config or {}),
                    created_at=now(),
                    active=activate,
                )
                .returning(*t.models.c)
            ).one()
            return StoredModel.from_row(row)

    def get_model(self, name: str, version: int | None = None) -> StoredModel | None:
        """A given version, or else the active one, or else the newest."""
        stmt = sa.select(t.models).where(t.models.c.name == name)
        if version is not None:
            stmt = stmt.where(t.models.c.version == int(version))
        else:
            stmt = stmt.order_by(t.models.c.active.desc(), t.models.c.version.desc())
        with self._read() as conn:
            row = conn.execute(stmt.limit(1)).first()
        return StoredModel.from_row(row) if row else None

    def list_models(self, name: str | None = None) -> list[StoredModel]:
        stmt = sa.select(t.models).order_by(t.models.c.name, t.models.c.version)
        if name is not None:
            stmt = stmt.where(t.models.c.name == name)
        with self._read() as conn:
            return [StoredModel.from_row(r) for r in conn.execute(stmt)]

    def activate_model(self, name: str, version: int) -> StoredModel:
        with self._write() as conn:
            found = conn.execute(
                sa.select(t.models.c.id).where(t.models.c.name == name, t.models.c.version == int(version))
            ).first()
            if found is None:
                raise AutotagError(f"model {name} version {version} is not in the library; see `autotag models`")
            conn.execute(sa.update(t.models).where(t.models.c.name == name).values(active=False))
            conn.execute(sa.update(t.models).where(t.models.c.id == found.id).values(active=True))
        model = self.get_model(name, version)
        assert model is not None
        return model

    # ---------------------------------------------------------------- learned tags
    LEARNED_MODEL = "learned"  # the predictions' model name for learned tags (kind "learned")
    VERDICTS = ("example", "rejected")

    def learned_tag(self, name: str) -> StoredLearnedTag | None:
        """A learned tag with its judged pictures, or None."""
        with self._read() as conn:
            row = conn.execute(sa.select(t.learned_tags).where(t.learned_tags.c.name == name)).first()
            if row is None:
                return None
            judged = conn.execute(
                sa.select(t.learned_examples.c.image_id, t.learned_examples.c.verdict)
                .where(t.learned_examples.c.tag_id == row.id)
                .order_by(t.learned_examples.c.created_at, t.learned_examples.c.image_id)
            ).all()
        return StoredLearnedTag(
            row.name,
            row.version,
            [int(i) for i, v in judged if v == "example"],
            [int(i) for i, v in judged if v == "rejected"],
            utc(row.created_at),
            utc(row.updated_at),
        )

    def learned_tags(self) -> list[StoredLearnedTag]:
        """Every learned tag, by name."""
        with self._read() as conn:
            names = list(conn.execute(sa.select(t.learned_tags.c.name).order_by(t.learned_tags.c.name)).scalars())
        found = [self.learned_tag(n) for n in names]
        return [f for f in found if f is not None]

    def judge_for_tag(
        self, name: str, examples: Iterable[int] = (), rejections: Iterable[int] = ()
    ) -> StoredLearnedTag:
        """Record pictures as examples of a learned tag or as rejected for it (creating the tag); a new
        judgement of a picture replaces its old one. Every id must be a stored image, else nothing changes."""
        verdicts = {int(i): "example" for i in examples} | {int(i): "rejected" for i in rejections}
        with self._write() as conn:
            for image_id in verdicts:
                self._require_image(conn, image_id)
            stamp = now()
            row = conn.execute(sa.select(t.learned_tags.c.id).where(t.learned_tags.c.name == name)).first()
            if row is None:
                tag_id = conn.execute(
                    sa.insert(t.learned_tags)
                    .values(name=name, version=0, created_at=stamp, updated_at=stamp)
                    .returning(t.learned_tags.c.id)
                ).scalar_one()
            else:
                tag_id = row.id
                conn.execute(sa.update(t.learned_tags).where(t.learned_tags.c.id == tag_id).values(updated_at=stamp))
            if verdicts:
                conn.execute(
                    sa.delete(t.learned_examples).where(
                        t.learned_examples.c.tag_id == tag_id, t.learned_examples.c.image_id.in_(list(verdicts))
                    )
                )
                conn.execute(
                    sa.insert(t.learned_examples),
                    [{"tag_id": tag_id, "image_id": i, "verdict": v, "created_at": stamp} for i, v in verdicts.items()],
                )
        found = self.learned_tag(name)
        assert found is not None
        return found

    def save_learned_model(
        self, name: str, model: str, *, examples: int, rejections: int, tagged: dict[int, float]
    ) -> int:
        """Store a new version of a learned tag's model and, in the same transaction, the pictures that
        now carry the tag (image id -> score) as its predictions. Returns the new version."""
        with self._write() as conn:
            row = conn.execute(sa.select(t.learned_tags).where(t.learned_tags.c.name == name)).first()
            if row is None:
                raise AutotagError(f"no learned tag {name!r}")
            version = int(row.version) + 1
            stamp = now()
            conn.execute(
                sa.insert(t.learned_models).values(
                    tag_id=row.id, version=version, model=model, examples=examples, rejections=rejections,
                    created_at=stamp,
                )
            )  # fmt: skip
            conn.execute(
                sa.update(t.learned_tags).where(t.learned_tags.c.id == row.id).values(version=version, updated_at=stamp)
            )
            self._replace_learned_predictions(conn, name, tagged)
        return version

    def _replace_learned_predictions(self, conn: Connection, name: str, tagged: dict[int, float]) -> None:
        p = t.predictions
        conn.execute(sa.delete(p).where(p.c.model == self.LEARNED_MODEL, p.c.tag == name))
        stamp = now()
        existing = set(conn.execute(sa.select(t.images.c.id).where(t.images.c.id.in_(list(tagged)))).scalars())
        rows = [
            {"image_id": i, "model": self.LEARNED_MODEL, "tag": name, "tag_id": f"learned:{name}",
             "score": float(s), "rank": 1, "kind": "learned", "created_at": stamp}
            for i, s in tagged.items() if i in existing
        ]  # fmt: skip
        if rows:
            conn.execute(sa.insert(p), rows)

    def learned_model(self, name: str, version: int | None = None) -> tuple[int, str] | None:
        """(version, model document) of a learned tag: the given version or the newest; None if none."""
        stmt = (
            sa.select(t.learned_models.c.version, t.learned_models.c.model)
            .join(t.learned_tags, t.learned_tags.c.id == t.learned_models.c.tag_id)
            .where(t.learned_tags.c.name == name)
        )
        stmt = stmt.where(t.learned_models.c.version == int(version)) if version is not None else stmt
        with self._read() as conn:
            row = conn.execute(stmt.order_by(t.learned_models.c.version.desc()).limit(1)).first()
        return (int(row.version), row.model) if row else None

    def learned_models(self) -> dict[str, tuple[int, str]]:
        """The newest model of every learned tag that has one: name -> (version, model document)."""
        m, lt = t.learned_models, t.learned_tags
        stmt = sa.select(lt.c.name, m.c.version, m.c.model).join(
            m, sa.and_(m.c.tag_id == lt.c.id, m.c.version == lt.c.version)
        )
        with self._read() as conn:
            return {r.name: (int(r.version), r.model) for r in conn.execute(stmt)}

    def learned_counts(self) -> dict[str, int]:
        """How many images carry each learned tag."""
        p = t.predictions
        stmt = sa.select(p.c.tag, sa.func.count()).where(p.c.model == self.LEARNED_MODEL).group_by(p.c.tag)
        with self._read() as conn:
            return {tag: int(n) for tag, n in conn.execute(stmt)}

    def learned_version(self) -> tuple[int, int]:
        """(number of learned tags, sum of their versions): changes whenever any learned tag changes, so a
        process can tell cheaply that its loaded models are stale (another process taught a tag)."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(t.learned_tags.c.version), 0))
            ).one()
        return int(row[0]), int(row[1])

    def forget_learned_tag(self, name: str) -> bool:
        """Remove a learned tag: its judgements, models and predictions (never an image). False if unknown."""
        with self._write() as conn:
            conn.execute(
                sa.delete(t.predictions).where(t.predictions.c.model == self.LEARNED_MODEL, t.predictions.c.tag == name)
            )
            tag_id = conn.execute(sa.select(t.learned_tags.c.id).where(t.learned_tags.c.name == name)).scalar()
            if tag_id is None:
                return False
            # explicit deletes: SQLite enforces ON DELETE CASCADE only with foreign keys on
            conn.execute(sa.delete(t.learned_examples).where(t.learned_examples.c.tag_id == tag_id))
            conn.execute(sa.delete(t.learned_models).where(t.learned_models.c.tag_id == tag_id))
            conn.execute(sa.delete(t.learned_tags).where(t.learned_tags.c.id == tag_id))
        return True
