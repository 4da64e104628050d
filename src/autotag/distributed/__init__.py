"""Batch tagging into Parquet shards on one machine or a Ray cluster, and indexing those shards.

Ray is imported only when `--engine ray` runs; `autotag.distributed` itself stays light.
"""

from autotag.distributed.runner import ENGINES, BatchJob, ShardTagger, run_batch

__all__ = ["ENGINES", "BatchJob", "ShardTagger", "run_batch"]
