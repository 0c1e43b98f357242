"""The Python onnxruntime side of `cargo xtask bench models`: the same graphs, shapes,
inputs, thread count and timing rule as examples/model_bench.rs.

usage: ort_bench.py MODELS_DIR THREADS SECONDS BATCHES MODEL...

Prints `result MODEL/GRAPH/bB ITEMS_PER_S` lines.
"""

import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort

SEQ = 32


def dim(d, batch):
    if isinstance(d, int):
        return d
    return {"batch": batch, "seq": SEQ, "tokens": SEQ * batch, "batch_plus_one": batch + 1}.get(d)


def synthetic(spec, batch):
    shape = [dim(d, batch) for d in spec["shape"]]
    if any(d is None for d in shape):
        return None
    n = int(np.prod(shape))
    dtype = spec.get("dtype", "float32")
    if dtype in ("int64", "int32"):
        row_splits = spec["shape"] == ["batch_plus_one"]
        a = np.arange(n, dtype=np.int64) * SEQ if row_splits else np.ones(n, dtype=np.int64)
        return a.astype(dtype).reshape(shape)
    i = np.arange(n, dtype=np.int64)
    return (((i * 7919) % 2000).astype(np.float32) / 1000.0 - 1.0).reshape(shape)


def timed(batch, budget, run):
    run()
    start = time.perf_counter()
    runs = 0
    while True:
        run()
        runs += 1
        elapsed = time.perf_counter() - start
        if (runs >= 3 and elapsed >= budget) or (runs >= 2 and elapsed >= 2 * budget):
            return runs * batch / elapsed


def main() -> None:
    models_dir, threads, seconds, batches = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    batches = [int(b) for b in batches.split(",")]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    for model in sys.argv[5:]:
        spec = tomllib.loads((models_dir / model / "model.toml").read_text())
        for g in spec.get("graphs", []):
            if any(synthetic(t, 1) is None for t in g["inputs"]):
                continue
            sess = ort.InferenceSession(str(models_dir / model / g["file"]), opts, providers=["CPUExecutionProvider"])
            stem = g["file"].removesuffix(".onnx")
            for b in batches:
                feed = {t["name"]: synthetic(t, b) for t in g["inputs"]}
                rate = timed(b, seconds, lambda: sess.run(None, feed))
                print(f"result {model}/{stem}/b{b} {rate:.2f}", flush=True)


if __name__ == "__main__":
    main()
