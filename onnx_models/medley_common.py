"""Helpers shared by the export scripts (no torch or TF imports here, so every env can use it):
golden tensors for the Rust tests and the model.toml the Rust adapters are built from."""

import json
import os

import numpy as np


def save_golden(out_dir, name, inputs, outputs, tolerance):
    """Write raw little-endian tensors plus a JSON index the Rust tests read."""
    gdir = os.path.join(out_dir, "golden")
    os.makedirs(gdir, exist_ok=True)
    index_path = os.path.join(gdir, "golden.json")
    index = json.load(open(index_path)) if os.path.exists(index_path) else {"cases": []}

    def dump(kind, tensors):
        entries = {}
        for key, arr in tensors.items():
            fname = f"{name}.{kind}.{key}.bin"
            arr = np.ascontiguousarray(arr)
            arr.tofile(os.path.join(gdir, fname))
            entries[key] = {"file": fname, "dtype": str(arr.dtype), "shape": list(arr.shape)}
        return entries

    index["cases"].append(
        {"name": name, "inputs": dump("in", inputs), "outputs": dump("out", outputs), "tolerance": tolerance}
    )
    json.dump(index, open(index_path, "w"), indent=1)


def check_onnx(out_dir, name, model_path, inputs, reference, tolerance, save=True):
    """Run an ONNX graph with onnxruntime, compare each output with the reference (PyTorch or
    TF), and keep inputs and onnxruntime outputs as golden tensors."""
    import onnxruntime as ort

    sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(None, inputs)))
    for key, ref in reference.items():
        diff = float(np.max(np.abs(got[key] - ref)))
        print(f"  {name}: {key} max|onnx - reference| = {diff:.2e} (tolerance {tolerance:.0e})")
        if not diff <= tolerance:
            raise SystemExit(f"golden check failed for {name}/{key}: {diff} > {tolerance}")
    if save:
        save_golden(out_dir, name, inputs, {k: got[k] for k in reference}, tolerance)
    return got


def fp16_variant(out_dir, file, inputs, min_cosine=0.999):
    """When the manifest entry offers fp16 (`fp16 = true`, passed as MEDLEY_FP16=1), write
    `<stem>.fp16.onnx` next to `file`: weights and compute in float16, inputs and outputs kept
    float32 so adapters feed it unchanged. Every output must keep a cosine similarity of at
    least `min_cosine` per row to the float32 graph. Returns the file name, or None."""
    if os.environ.get("MEDLEY_FP16") != "1":
        return None
    import onnx
    import onnxruntime as ort
    from onnxruntime.transformers.float16 import convert_float_to_float16

    src = os.path.join(out_dir, file)
    name = file.removesuffix(".onnx") + ".fp16.onnx"
    onnx.save(convert_float_to_float16(onnx.load(src), keep_io_types=True), os.path.join(out_dir, name))
    run = lambda f: ort.InferenceSession(os.path.join(out_dir, f), providers=["CPUExecutionProvider"]).run(None, inputs)
    for a, b in zip(run(file), run(name)):
        a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
        cos = float(np.min((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)))
        print(f"  {name}: min cosine to float32 = {cos:.6f} (at least {min_cosine})")
        if not cos >= min_cosine:
            raise SystemExit(f"fp16 check failed for {name}: cosine {cos} < {min_cosine}")
    return name


_DTYPES = {1: "float32", 6: "int32", 7: "int64", 10: "float16", 9: "bool", 8: "string"}


def graph_spec(path, file):
    """Input and output names, dtypes and shapes of an ONNX file, for model.toml."""
    import onnx

    m = onnx.load(path, load_external_data=False)

    def tensors(values):
        out = []
        for v in values:
            t = v.type.tensor_type
            shape = [d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value") else "?") for d in t.shape.dim]
            out.append({"name": v.name, "dtype": _DTYPES.get(t.elem_type, str(t.elem_type)), "shape": shape})
        return out

    return {"file": file, "inputs": tensors(m.graph.input), "outputs": tensors(m.graph.output)}


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        if v and isinstance(v[0], dict):
            return "[" + ", ".join("{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in d.items()) + " }" for d in v) + "]"
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v)} to TOML")


def write_spec(out_dir, spec):
    """Write OUT_DIR/model.toml: top-level keys, then [[graphs]], then one table per section
    (nested dicts become [section.sub])."""
    lines = ["# Written by the medley export script: what this model is and how to feed it."]
    tables = []
    for k, v in spec.items():
        if isinstance(v, dict):
            tables.append((k, v))
        elif k == "graphs":
            continue
        else:
            lines.append(f"{k} = {_toml_value(v)}")
    for g in spec.get("graphs", []):
        lines.append("\n[[graphs]]")
        for k, v in g.items():
            lines.append(f"{k} = {_toml_value(v)}")

    def table(prefix, d):
        lines.append(f"\n[{prefix}]")
        subs = []
        for k, v in d.items():
            if isinstance(v, dict):
                subs.append((k, v))
            else:
                lines.append(f"{json.dumps(k) if not k.replace('_', '').isalnum() else k} = {_toml_value(v)}")
        for k, v in subs:
            table(f"{prefix}.{k}", v)

    for k, v in tables:
        table(k, v)
    with open(os.path.join(out_dir, "model.toml"), "w") as f:
        f.write("\n".join(lines) + "\n")
