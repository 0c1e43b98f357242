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


def sample_windows(seconds, offset_s, window, rate):
    """Mono windows of the sample media's soundtracks (`cargo xtask media`, fetched before the
    export: `needs_media` in the manifest), `seconds` of each file from `offset_s`."""
    import subprocess

    media = os.path.join(os.environ["MEDLEY_HOME"], "media")
    files = sorted(
        os.path.join(d, f) for d in (os.path.join(media, s) for s in ("music", "videos", "film")) if os.path.isdir(d)
        for f in os.listdir(d)
    )
    out = []
    for f in files:
        raw = subprocess.run(
            ["ffmpeg", "-v", "quiet", "-ss", str(offset_s), "-t", str(seconds), "-i", f, "-ac", "1", "-ar", str(rate),
             "-f", "f32le", "-"], capture_output=True).stdout
        x = np.frombuffer(raw, dtype=np.float32)
        out += [x[i : i + window] for i in range(0, len(x) - window + 1, window)]
    return out


def int8_variant(name, path, input_name, calibration, held_out, extra, checked, min_cosine, choose):
    """Write `model.int8.onnx` beside `path`: static int8 (QDQ, per-channel weights, uint8
    activations) calibrated on `calibration` (waveform windows fed to `input_name`), of the
    nodes `choose` picks: it gets the graph prepared for quantizing (onnx.GraphProto) and
    returns `nodes_to_exclude` or `nodes_to_quantize` for `quantize_static`. Every held-out input
    (`held_out` windows, then the `extra` batch) must keep at least `min_cosine` to the float
    graph on each output in `checked`, else the variant is deleted. Returns the int8 graph's
    outputs on `extra` by name, or None."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration) < 16 or len(held_out) < 8:
        print(f"  {name} int8: too little sample audio ({len(calibration)}, {len(held_out)} windows): float only")
        return None

    class Windows(CalibrationDataReader):
        def __init__(self):
            self.rest = iter(calibration)

        def get_next(self):
            w = next(self.rest, None)
            return None if w is None else {input_name: w[None, :]}

    out_dir = os.path.dirname(path)
    prepared, int8_path = os.path.join(out_dir, "prepared.onnx"), os.path.join(out_dir, "model.int8.onnx")
    quant_pre_process(path, prepared, skip_symbolic_shape=True)
    quantize_static(prepared, int8_path, Windows(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, **choose(onnx.load(prepared).graph))
    os.remove(prepared)
    inputs = np.concatenate([np.stack(held_out), extra]).astype(np.float32)

    def run(p):
        sess = ort.InferenceSession(p, providers=["CPUExecutionProvider"])
        return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {input_name: inputs})))

    a, b = run(path), run(int8_path)
    worst = 1.0
    for key in checked:
        u, v = a[key], b[key]
        cos = (u * v).sum(1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1) + 1e-12)
        worst = min(worst, float(cos.min()))
        print(f"  {name} int8: {key} over {len(inputs)} held-out windows cosine to float min {cos.min():.4f}, "
              f"mean {cos.mean():.4f} (at least {min_cosine}; {len(calibration)} calibration windows)")
    if not worst >= min_cosine:
        print(f"  {name} int8: not close enough, float only")
        os.remove(int8_path)
        return None
    return {k: v[len(held_out):] for k, v in b.items()}


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
