"""Similar-image search, near-duplicates and maps over image embeddings (FAISS imported lazily)."""

from autotag.index.duplicates import DEFAULT_THRESHOLD, DuplicateGroup, DuplicatePair, find_duplicates, phash
from autotag.index.learned import RETRIEVAL_LOSSES, RetrievalHead, RetrievalHeadConfig, train_retrieval_head
from autotag.index.library_index import LibraryIndex
from autotag.index.vector import INDEX_KINDS, VectorIndex, choose_kind, normalize_rows

__all__ = [
    "DEFAULT_THRESHOLD",
    "INDEX_KINDS",
    "RETRIEVAL_LOSSES",
    "LibraryIndex",
    "DuplicateGroup",
    "DuplicatePair",
    "RetrievalHead",
    "RetrievalHeadConfig",
    "VectorIndex",
    "choose_kind",
    "find_duplicates",
    "normalize_rows",
    "phash",
    "train_retrieval_head",
]
