"""Batch tagging into Parquet shards, in one process (`local`) or on a Ray cluster (`ray`).

The sorted input list is cut into shards of `shard_size`; shard i is `part-0000i.parquet` in DEST.
One `ShardTagger` (one model load) tags and writes whole shards; the local engine calls it in a
loop, the Ray engine runs a pool of them as actors over the pending shards (Ray Data
`map_batches`, one shard per call). Both engines therefore run the very same code per shard.

A shard file is written under a temporary name and renamed, and carries a fingerprint of its
inputs and settings, so a rerun skips exactly the shards that are finished and still valid.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from autotag.distributed.inputs import resolve_inputs
from autotag.registry import Registry
from autotag.types import AutotagError

ENGINES: Registry[str] = Registry("engine")  # name -> what runs the shard taggers
ENGINES.register("local", "this process, one shard after another")
ENGINES.register("ray", "a pool of actors on a Ray cluster (Ray Data)")
SHARD_PATTERN = "part-{:05d}.parquet"
SUMMARY_NAME = "_summary.json"
META_KEY = b"autotag"
MAX_LISTED_FAILURES = 1000

TAG_TYPE = pa.struct(
    [("name", pa.string()), ("id", pa.string()), ("score", pa.float32()), ("kind", pa.string()),
     ("detail", pa.string())]
)  # fmt: skip
# the facets, each in its own column, in the shapes of the pipeline's records (Item.to_dict)
OBJECT_TYPE = pa.struct(  # box null and source "classifier" for an object the classifier alone named
    [("name", pa.string()), ("label", pa.string()), ("score", pa.float32()), ("box", pa.list_(pa.float32(), 4)),
     ("source", pa.string())]
)  # fmt: skip
COLOR_TYPE = pa.struct([("name", pa.string()), ("share", pa.float32()), ("hex", pa.string())])
STYLE_TYPE = pa.struct(
    [("kind", pa.string()), ("style", pa.string()), ("score", pa.float32()), ("style_score", pa.float32())]
)
PROPERTIES_TYPE = pa.struct(
    [("width", pa.int32()), ("height", pa.int32()), ("orientation", pa.string()), ("shape", pa.string()),
     ("aspect_ratio", pa.string()), ("resolution", pa.string()), ("megapixels", pa.float32()),
     ("lightness", pa.float32()), ("tone", pa.string())]
)  # fmt: skip
FACET_TYPES = {
    "objects": pa.list_(OBJECT_TYPE),
    "colors": pa.list_(COLOR_TYPE),
    "style": STYLE_TYPE,
    "properties": PROPERTIES_TYPE,
}


@dataclass(frozen=True)
class BatchJob:
    """Everything that decides a shard's content: two equal jobs on the same inputs write equal shards."""

    # None = the setting (autotag.config): flags over AUTOTAG_* over the config file over the defaults
    model: str | None = None  # encoder name or trained-model folder
    top_k: int | None = None
    threshold: float | None = None
    shard_size: int = 1000
    batch_size: int | None = None
    objects: bool | None = None  # run the object detector (the default model)
    learned: tuple[str, ...] = ()  # a library's learned tags (model documents) to give too (`--db LIB`)

    def resolved(self) -> BatchJob:
        """Every unset field filled from the settings, so the fingerprint records what was used."""
        from dataclasses import replace

        from autotag.config import load_settings

        settings = load_settings(model=self.model, top_k=self.top_k, threshold=self.threshold,
                                 batch_size=self.batch_size, objects=self.objects)
        if self.shard_size < 1 or settings.batch_size < 1:
            raise AutotagError("--shard-size and --batch-size must be at least 1")
        model = settings.model
        if not Path(model).is_dir():  # checked here, not first inside a remote actor
            from autotag.encoders import list_encoders

            if model not in list_encoders():
                raise AutotagError(
                    f"unknown model {model!r}: give a model folder or one of {', '.join(list_encoders())}"
                )
        return replace(self, model=model, top_k=settings.top_k, threshold=settings.threshold,
                       batch_size=settings.batch_size, objects=settings.objects)


def shard_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            ("path", pa.string()),
            ("content_hash", pa.string()),
            ("tags", pa.list_(TAG_TYPE)),
            ("embedding", pa.list_(pa.float32(), dim)),
            ("phash", pa.uint64()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            *FACET_TYPES.items(),
            ("error", pa.string()),
        ]
    )


def plan_shards(refs: list[str], shard_size: int) -> list[list[str]]:
    return [refs[i : i + shard_size] for i in range(0, len(refs), shard_size)]


def fingerprint(paths: list[str], job: BatchJob) -> str:
    return hashlib.sha256(json.dumps([paths, asdict(job)]).encode()).hexdigest()


def filesystem(dest: str) -> tuple[Any, str]:
    import fsspec

    return fsspec.core.url_to_fs(dest)


def _shard_number(path: str) -> int:
    digits = path.rsplit("part-", 1)[-1].split(".", 1)[0]
    return int(digits) if digits.isdigit() else -1


def shard_meta(fs: Any, path: str) -> dict[str, Any] | None:
    """What `write_shard` stored in a finished shard (fingerprint, model, encoder, dim), or None when
    there is no readable shard."""
    try:
        with fs.open(path, "rb") as fh:
            meta = pq.read_schema(fh).metadata or {}
        return json.loads(meta[META_KEY])
    except (FileNotFoundError, KeyError, ValueError, OSError, pa.ArrowInvalid):
        return None


class ShardTagger:
    """Loads the model once; `write_shard` tags a list of image references and writes one shard.

    `threads`: ONNX Runtime threads for this instance (a Ray actor gets as many as its CPUs).
    """

    def __init__(self, job: BatchJob, dest: str, threads: int | None = None) -> None:
        from autotag.pipeline import Tagger, TagOptions

        self.job = job
        self.tagger = Tagger.load(job.model, threads=threads, batch_size=job.batch_size, objects=job.objects)
        self.options = TagOptions(top_k=job.top_k, threshold=job.threshold)
        self.dest = dest
        self.fs, self.root = filesystem(dest)
        self.schema = shard_schema(self.tagger.encoder.spec.embedding_dim)
        from autotag.heads.learned_tag import LearnedTag

        self.learned = {m.tag: m for m in (LearnedTag.from_bytes(doc.encode()) for doc in job.learned)}

    def tag_shard(self, refs: list[str]) -> pa.Table:
        """The shard's images through the pipeline (decode in threads, batched encoder, decide) -> rows."""
        items = list(self.tagger.stream(refs, options=self.options, phash=True))
        dim = self.schema.field("embedding").type.list_size
        ok = np.array([i.ok for i in items], bool)
        embeddings = np.zeros((len(items), dim), np.float32)
        if ok.any():
            embeddings[ok] = np.stack([i.embedding for i in items if i.ok])
        if self.learned and ok.any():
            from autotag.heads.learned_tag import learned_tags

            for item, extra in zip([i for i in items if i.ok], learned_tags(self.learned, embeddings[ok]), strict=True):
                item.tags = [*item.tags, *extra]

        def column(pick: Any) -> list:
            return [pick(i) if i.ok else None for i in items]

        rows = [i.facets() if i.ok else {} for i in items]

        return pa.table(
            {
                "path": refs,
                "content_hash": column(lambda i: i.content_hash),
                "tags": pa.array(
                    column(lambda i: [{"name": t.name, "id": t.id, "score": t.score, "kind": t.kind, "detail": t.detail}
                                      for t in i.tags]),  # fmt: skip
                    pa.list_(TAG_TYPE),
                ),
                "embedding": pa.FixedSizeListArray.from_arrays(
                    pa.array(embeddings.reshape(-1)), dim, mask=pa.array(~ok)
                ),
                "phash": pa.array(column(lambda i: i.phash), pa.uint64()),
                "width": pa.array(column(lambda i: i.meta.get("width")), pa.int32()),
                "height": pa.array(column(lambda i: i.meta.get("height")), pa.int32()),
                **{name: pa.array([facets.get(name) for facets in rows], kind) for name, kind in FACET_TYPES.items()},
                "error": [i.error for i in items],
            },
            schema=self.schema,
        )

    def write_shard(self, index: int, refs: list[str]) -> dict[str, Any]:
        start = time.perf_counter()
        table = self.tag_shard(refs)
        meta = {
            "fingerprint": fingerprint(refs, self.job),
            "model": self.tagger.model_name,
            "encoder": self.tagger.encoder.spec.name,
            "dim": self.schema.field("embedding").type.list_size,
        }
        table = table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
        final = f"{self.root}/{SHARD_PATTERN.format(index)}"
        tmp = f"{final}.tmp-{uuid.uuid4().hex}"
        with self.fs.open(tmp, "wb") as fh:
            pq.write_table(table, fh)
        self.fs.mv(tmp, final)  # a reader never sees half a shard
        failed = int(table.column("error").is_valid().to_numpy(zero_copy_only=False).sum())
        return {"shard": index, "images": len(refs), "failed": failed, "seconds": time.perf_counter() - start}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Ray Data entry point: each row of `batch` is one shard (its index and its references)."""
        pairs = zip(batch["shard"], batch["refs"], strict=True)
        rows = [self.write_shard(int(i), [str(r) for r in refs]) for i, refs in pairs]
        return {key: np.array([row[key] for row in rows]) for key in rows[0]}


def _run_ray(
    pending: list[tuple[int, list[str]]], job: BatchJob, dest: str, actors: int | None, address: str | None
) -> None:
    try:
        import ray
    except ImportError as exc:
        raise AutotagError("--engine ray needs Ray: pip install 'ray[data]'") from exc
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise AutotagError(f"cannot reach the Ray cluster at {address}: {exc}; check `ray status`") from exc
    cpus = int(ray.cluster_resources().get("CPU", 1))
    size = max(1, min(actors or cpus, len(pending)))
    items = [{"shard": i, "refs": refs} for i, refs in pending]
    dataset = ray.data.from_items(items, override_num_blocks=len(items))
    written = dataset.map_batches(
        ShardTagger,
        fn_constructor_args=(job, dest, max(1, cpus // size)),
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=size),
        num_cpus=max(1, cpus // size),
    )
    written.materialize()


def summarize(dest: str, shard_count: int) -> dict[str, Any]:
    """Counts and failures over every shard of DEST (read from the shards' small columns)."""
    fs, root = filesystem(dest)
    total = failed = 0
    failures: list[dict[str, str]] = []
    for i in range(shard_count):
        with fs.open(f"{root}/{SHARD_PATTERN.format(i)}", "rb") as fh:
            table = pq.read_table(fh, columns=["path", "error"])
        total += table.num_rows
        bad = table.filter(table.column("error").is_valid())
        failed += bad.num_rows
        failures.extend(bad.to_pylist()[: MAX_LISTED_FAILURES - len(failures)])
    return {"images": total, "tagged": total - failed, "failed": failed, "failures": failures}


def run_batch(
    sources: list[str],
    dest: str,
    *,
    engine: str = "local",
    job: BatchJob | None = None,
    actors: int | None = None,
    address: str | None = None,
) -> dict[str, Any]:
    """Tag every image SOURCE stands for into Parquet shards in DEST; returns (and writes) the summary."""
    ENGINES.check(engine)
    job = (job or BatchJob()).resolved()
    shards = plan_shards(resolve_inputs(sources), job.shard_size)
    fs, root = filesystem(dest)
    fs.makedirs(root, exist_ok=True)
    stale = [f for f in fs.glob(f"{root}/part-*.parquet") if _shard_number(f) >= len(shards)]
    for path in stale:  # left by an earlier run over more inputs; DEST describes this SOURCE only
        fs.rm(path)
    pending = [
        (i, refs)
        for i, refs in enumerate(shards)
        if (shard_meta(fs, f"{root}/{SHARD_PATTERN.format(i)}") or {}).get("fingerprint") != fingerprint(refs, job)
    ]
    start = time.perf_counter()
    if pending and engine == "local":
        worker = ShardTagger(job, dest)
        for i, refs in pending:
            worker.write_shard(i, refs)
    elif pending:
        _run_ray(pending, job, dest, actors, address)
    seconds = time.perf_counter() - start
    written_images = sum(len(refs) for _, refs in pending)
    summary = {
        "engine": engine,
        "model": job.model,
        "shards": len(shards),
        "shards_written": len(pending),
        "shards_skipped": len(shards) - len(pending),
        "shards_removed": len(stale),
        **summarize(dest, len(shards)),
        "seconds": round(seconds, 3),
        "images_per_second": round(written_images / seconds, 2) if written_images else None,
    }
    with fs.open(f"{root}/{SUMMARY_NAME}", "w") as fh:
        json.dump(summary, fh, indent=2)
    return summary
