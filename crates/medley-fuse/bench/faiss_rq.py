"""The faiss-cpu side of `cargo xtask bench sid`: residual k-means built from faiss.Kmeans.

usage: faiss_rq.py DATA.npy LEVELS CODES ITERS SEED

Each level trains faiss.Kmeans on the current residual with every point (subsampling off:
max_points_per_centroid is raised above n / K), assigns every point to its nearest centroid
and subtracts it, exactly as medley-fuse's train() does. Prints `result KEY VALUE` lines.
"""

import sys
import time

import faiss
import numpy as np


def main() -> None:
    path, levels, codes, iters, seed = sys.argv[1], *map(int, sys.argv[2:6])
    x = np.ascontiguousarray(np.load(path), dtype=np.float32)
    n, d = x.shape
    total = float(((x - x.mean(axis=0, dtype=np.float64)) ** 2).sum(dtype=np.float64))
    print(f"faiss_rq: {n} x {d}, L={levels} K={codes} iters={iters}, faiss {faiss.__version__}, "
          f"{faiss.omp_get_max_threads()} threads", file=sys.stderr)
    t = time.perf_counter()
    residual = x.copy()
    errs = []
    for level in range(levels):
        km = faiss.Kmeans(d, codes, niter=iters, seed=seed + level, verbose=False,
                          max_points_per_centroid=n // codes + 1)
        km.train(residual)
        _, assign = km.index.search(residual, 1)
        residual -= km.centroids[assign[:, 0]]
        errs.append(float((residual.astype(np.float64) ** 2).sum()) / total)
    train_s = time.perf_counter() - t
    print(f"result train_s {train_s:.3f}")
    for level, e in enumerate(errs):
        print(f"result rel_mse_l{level + 1} {e:.6f}")
    print(f"result rel_mse {errs[-1]:.6f}")


if __name__ == "__main__":
    main()
