"""Scale of the vector index: build time, memory, single-query latency, recall@10 vs exact search.

Two collections of 1280-dim unit vectors (the embedding size of efficientnet_lite0):
  random   N random unit vectors (default 1,000,000). The hardest case for any approximate index:
           in 1280 dimensions every point is almost equally far from a random query.
  realish  N vectors (default 100,000) drawn around real Fashion-MNIST embeddings (from
           bench/bench_retrieval.py's cache): each is a real embedding plus Gaussian noise shaped by
           the real data's principal components (half their spread), so the spectrum and clusters
           look like a real collection. Queries are fresh draws, not members of the collection.
Ground truth is exact inner-product search over the same vectors in the same run (faiss.knn); its
single-query latency is the baseline for the speed-up. Latency is measured one query at a time on
one thread (the way a request is served).

    nice -n 10 .venv/bin/python bench/bench_index_scale.py --data realish --n 100000 --kinds hnsw,ivfpq
    nice -n 10 .venv/bin/python bench/bench_index_scale.py --data random --n 1000000 --kinds ivfpq
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def rss_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1e6
    return 0.0


def unit_rows(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def random_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):
        out[s : s + 100_000] = unit_rows(rng.standard_normal((min(100_000, n - s), dim), dtype=np.float32))
    return out


def realish_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    caches = sorted((ROOT / ".cache" / "bench").glob("fmnist_*_train_*.npz"))
    rng = np.random.default_rng(seed)
    if caches:
        real = np.load(caches[-1])["x"].astype(np.float32)
    else:  # no cached embeddings: a Gaussian mixture with a decaying spectrum instead
        print("no cached real embeddings (run bench_retrieval.py first); using a synthetic mixture")
        real = rng.standard_normal((3000, dim)).astype(np.float32) * (1.0 / np.arange(1, dim + 1) ** 0.5)
    real = unit_rows(real.copy())
    mean = real.mean(axis=0)
    _, s, vt = np.linalg.svd(real - mean, full_matrices=False)
    spread = (s / np.sqrt(len(real)))[:, None] * vt  # principal directions scaled by their std
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 50_000):
        m = min(50_000, n - start)
        anchors = real[rng.integers(0, len(real), m)]
        noise = rng.standard_normal((m, len(spread)), dtype=np.float32) @ spread.astype(np.float32)
        out[start : start + m] = unit_rows(anchors + 0.5 * noise)
    return out


def main() -> None:
    import faiss

    from autotag.index import VectorIndex

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", choices=["random", "realish"], default="realish")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--kinds", default="hnsw,ivfpq")
    parser.add_argument("--nlist", type=int, default=0, help="ivfpq inverted lists (0: about sqrt(n))")
    parser.add_argument("--nprobe", default="16,32,64", help="ivfpq nprobe values to sweep")
    parser.add_argument("--ef", default="64,128,256", help="hnsw efSearch values to sweep")
    parser.add_argument("--hnsw-storage", default="flat", choices=["flat", "sq8"])
    args = parser.parse_args()

    all_threads = faiss.omp_get_max_threads()
    t0 = time.perf_counter()
    make = random_vectors if args.data == "random" else realish_vectors
    base = make(args.n + args.queries, args.dim, seed=0)
    queries, base = base[args.n :].copy(), base[: args.n]
    print(f"{args.data}: {args.n} x {args.dim} float32 ({base.nbytes / 1e9:.2f} GB) + {args.queries} queries, "
          f"generated in {time.perf_counter() - t0:.0f} s")

    t0 = time.perf_counter()
    true_scores, true_ids = faiss.knn(queries, base, 10, metric=faiss.METRIC_INNER_PRODUCT)
    print(f"exact ground truth for {args.queries} queries: {time.perf_counter() - t0:.1f} s (all threads)")
    faiss.omp_set_num_threads(1)
    exact_lat = []
    for q in queries[:20]:
        t = time.perf_counter()
        faiss.knn(q[None], base, 10, metric=faiss.METRIC_INNER_PRODUCT)
        exact_lat.append(time.perf_counter() - t)
    exact_median = float(np.median(exact_lat)) * 1000
    print(f"exact single-query latency (1 thread, brute force): median {exact_median:.1f} ms")
    print(f"top-10 cosine of the true neighbours: mean {true_scores.mean():.3f}, "
          f"gap 1st-10th {np.mean(true_scores[:, 0] - true_scores[:, 9]):.3f}")

    ids = np.arange(args.n, dtype=np.int64)
    for kind in args.kinds.split(","):
        faiss.omp_set_num_threads(all_threads)
        params = {"storage": args.hnsw_storage} if kind == "hnsw" else {}
        if kind == "ivfpq" and args.nlist:
            params["nlist"] = args.nlist
        index = VectorIndex(args.dim, kind, **params)
        rss0 = rss_gb()
        t0 = time.perf_counter()
        chunk = 100_000
        for s in range(0, args.n, chunk):  # incremental adds, the way a library grows
            index.add(ids[s : s + chunk], base[s : s + chunk])
        build = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            index.save(tmp)
            disk = (Path(tmp) / "index.faiss").stat().st_size / 1e9
        print(f"\n[{index.kind}] built in {build:.0f} s; RSS +{rss_gb() - rss0:.2f} GB; on disk {disk:.2f} GB")
        sweep = [("-", 0)]
        if index.kind == "ivfpq":
            sweep = [("nprobe", int(v)) for v in args.nprobe.split(",")]
        elif index.kind == "hnsw":
            sweep = [("ef_search", int(v)) for v in args.ef.split(",")]
        faiss.omp_set_num_threads(1)
        for name, value in sweep:
            if name != "-":
                index.params[name] = value
            found = np.stack([index.search(q, 10)[1][0] for q in queries])  # warm-up + recall
            recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, true_ids, strict=True)])
            lat = []
            for q in queries:
                t = time.perf_counter()
                index.search(q, 10)
                lat.append(time.perf_counter() - t)
            lat_ms = np.array(lat) * 1000
            med = float(np.median(lat_ms))
            print(f"  {name}={value:<4d} recall@10 {recall:.3f}  latency median {med:.2f} ms  "
                  f"p99 {np.percentile(lat_ms, 99):.2f} ms  ({exact_median / med:.0f}x faster than exact)")
        del index
    print(f"\npeak RSS of the run: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
    main()
