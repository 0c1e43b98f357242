"""Compare two exports of the `media` table (`medley export`), one indexed on CPU and one on
CUDA, row by row (matched on content_hash): the cosine of each vector column, and how many
rows agree on each text column (labels, description, transcript, language). Prints a JSON
report; exits 1 when the rows differ in number or a vector's cosine is below --min-cosine.

usage: python3 compare_runs.py CPU.parquet GPU.parquet [--min-cosine 0.99]
"""

import json
import sys

import numpy as np
import pyarrow.parquet as pq


def rows_by_hash(path):
    t = pq.read_table(path).to_pylist()
    return {r["content_hash"]: r for r in t}


def cosine(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return float(a @ b / (na * nb))


def main():
    cpu_path, gpu_path = sys.argv[1], sys.argv[2]
    min_cos = float(sys.argv[sys.argv.index("--min-cosine") + 1]) if "--min-cosine" in sys.argv else 0.99
    cpu, gpu = rows_by_hash(cpu_path), rows_by_hash(gpu_path)
    report = {"cpu_rows": len(cpu), "gpu_rows": len(gpu), "only_cpu": sorted(set(cpu) - set(gpu)),
              "only_gpu": sorted(set(gpu) - set(cpu)), "vectors": {}, "texts": {}, "differences": []}
    common = sorted(set(cpu) & set(gpu))
    sample = cpu[common[0]] if common else {}
    for col, v in sample.items():
        if isinstance(v, list) and v and isinstance(v[0], float) or col in ("visual", "audio", "music", "text", "bridge", "semantic", "sound_bridge", "music_bridge", "ocr"):
            cos = [cosine(cpu[h][col], gpu[h][col]) for h in common if cpu[h].get(col) is not None and gpu[h].get(col) is not None]
            nulls = sum((cpu[h].get(col) is None) != (gpu[h].get(col) is None) for h in common)
            if cos or nulls:
                report["vectors"][col] = {"rows": len(cos), "min": min(cos) if cos else None,
                                          "mean": float(np.mean(cos)) if cos else None, "null_mismatch": nulls}
    for col in ("labels", "description", "transcript", "language", "ocr_text", "sound_tags", "music_tags"):
        if col not in sample:
            continue
        key = (lambda r: [l["label"] for l in (r[col] or [])][:1]) if col in ("labels", "sound_tags", "music_tags") else (lambda r: r[col])
        same = [h for h in common if key(cpu[h]) == key(gpu[h])]
        report["texts"][col] = {"rows": len(common), "same": len(same)}
        for h in common:
            if key(cpu[h]) != key(gpu[h]) and len(report["differences"]) < 12:
                report["differences"].append({"path": cpu[h].get("path"), "column": col,
                                              "cpu": str(key(cpu[h]))[:200], "gpu": str(key(gpu[h]))[:200]})
    print(json.dumps(report, indent=1))
    bad = report["only_cpu"] or report["only_gpu"] or any(
        v["min"] is not None and v["min"] < min_cos for v in report["vectors"].values())
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
