#!/usr/bin/python3
"""FAISS side of bench/search.ts (Debian's python3-faiss and python3-numpy).

  search-faiss.py gt   <base.npy> <queries.npy> <k> <out.json>
      exact top-k by inner product (FAISS IndexFlatIP, SIMD) for every query over all rows, over the first 1 %
      and the first 50 % of the rows (the filtered-search subsets), plus FAISS IndexFlatIP single-query
      latency (brute force, 1 thread).
  search-faiss.py hnsw <base.npy> <queries.npy> <gt.json> <k> <M> <efConstruction> <ef,ef,...> <out.json>
      FAISS IndexHNSWFlat (inner product): build time with all cores, peak RSS, then per efSearch:
      recall@k against gt and single-query latency (1 thread), p50/p99/QPS.
"""
import json
import resource
import sys
import time

import faiss
import numpy as np


def load(path):
    return np.ascontiguousarray(np.load(path).astype(np.float32))


def topk(q, x, k):
    """Exact top-k by inner product: FAISS IndexFlatIP on its SIMD path, queries in parallel.

    Debian's numpy and FAISS link the reference BLAS (libblas3), whose sgemm is several times slower here than
    FAISS's own SIMD inner products (17.6 s vs 66-97 s for 1,000 queries over 100,000 rows).
    """
    faiss.cvar.distance_compute_blas_threshold = 1 << 30
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    _, ids = index.search(q, k)
    return ids


def percentile(values, p):
    return float(np.percentile(np.asarray(values), p, method="inverted_cdf"))


def single_query_latency(index, q, k, n=None):
    lat = []
    ids = []
    for i in range(q.shape[0] if n is None else min(n, q.shape[0])):
        t = time.perf_counter()
        _, found = index.search(q[i : i + 1], k)
        lat.append((time.perf_counter() - t) * 1000)
        ids.append(found[0].tolist())
    return lat, ids


def recall(truth, got, k):
    hit = 0
    for t, g in zip(truth, got):
        hit += len(set(t[:k]) & set(g[:k]))
    return hit / (len(got) * k)


def main():
    mode = sys.argv[1]
    if mode == "gt":
        base, queries, k, out = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
        x = load(base)
        q = load(queries)
        n = x.shape[0]
        t = time.perf_counter()
        full = topk(q, x, k)
        batch_seconds = time.perf_counter() - t
        subsets = {"1": topk(q, x[: n // 100], k).tolist(), "50": topk(q, x[: n // 2], k).tolist()}
        faiss.omp_set_num_threads(1)
        flat = faiss.IndexFlatIP(x.shape[1])
        flat.add(x)
        lat, _ = single_query_latency(flat, q, k, 100)
        nn = np.array([float(q[i] @ x[full[i][0]]) for i in range(q.shape[0])])
        json.dump(
            {
                "ids": full.tolist(),
                "subsets": subsets,
                "batchSeconds": batch_seconds,
                "flatP50Ms": percentile(lat, 50),
                "flatP99Ms": percentile(lat, 99),
                "nnCosineMean": float(nn.mean()),
                "nnCosineP10": percentile(nn, 10),
                "nnCosineP90": percentile(nn, 90),
            },
            open(out, "w"),
        )
        return
    if mode == "hnsw":
        base, queries, gt_path = sys.argv[2], sys.argv[3], sys.argv[4]
        k, m, ef_c = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
        efs = [int(e) for e in sys.argv[8].split(",")]
        out = sys.argv[9]
        x = load(base)
        q = load(queries)
        truth = json.load(open(gt_path))["ids"]
        threads = faiss.omp_get_max_threads()
        index = faiss.IndexHNSWFlat(x.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_c
        t = time.perf_counter()
        index.add(x)
        build = time.perf_counter() - t
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        faiss.omp_set_num_threads(1)
        points = []
        for ef in efs:
            index.hnsw.efSearch = ef
            lat, ids = single_query_latency(index, q, k)
            points.append(
                {
                    "params": {"efSearch": ef},
                    "recall": recall(truth, ids, k),
                    "p50Ms": percentile(lat, 50),
                    "p99Ms": percentile(lat, 99),
                    "qps": len(lat) / (sum(lat) / 1000),
                }
            )
        json.dump(
            {"buildSeconds": build, "maxRssMB": rss, "threads": threads, "m": m, "efConstruction": ef_c, "points": points},
            open(out, "w"),
        )
        return
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
