"""PP-OCRv4 on-screen text: the detection and recognition ONNX graphs shipped in the
rapidocr-onnxruntime wheel, copied as they are, plus the character dictionary kept in the
recognition graph's metadata, and model.toml with everything the Rust adapter needs
(preprocessing, DB postprocess thresholds, CTC decoding).

Usage: python export_ocr.py MODEL_ID OUT_DIR

Golden check: rapidocr's own Python pipeline (det -> crop -> rec -> CTC) must read the exact
text rendered on a few title cards (DejaVu fonts, white/coloured/photo-like backgrounds, 1-3
lines of English of different sizes). The cards (raw RGB24) and the texts are kept under
OUT_DIR/golden/ so the Rust test checks its own pipeline against the same pictures.
"""

import json
import os
import shutil
import sys

import numpy as np
import onnxruntime as ort

from medley_common import graph_spec, write_spec

FONT_DIR = "/usr/share/fonts/truetype/dejavu"

# (name, width, height, background, [(text, font file, size, colour)], bar[, corners]): lines
# are drawn centred one under another; `bar` draws a caption bar behind them (lower third);
# `corners` are extra words at fixed places (text, x, y), read before the lines.
CARDS = [
    ("white_one_line", 960, 540, "white", [("Welcome to the Harbor Festival", "DejaVuSans.ttf", 44, (0, 0, 0))], None),
    (
        "navy_two_sizes",
        1280,
        720,
        (18, 32, 84),
        [
            ("CHAPTER THREE", "DejaVuSans-Bold.ttf", 88, (255, 255, 255)),
            ("The long road north", "DejaVuSerif.ttf", 40, (230, 210, 140)),
        ],
        None,
    ),
    (
        "yellow_three_lines",
        800,
        600,
        (250, 220, 60),
        [
            ("Opening Hours", "DejaVuSans-Bold.ttf", 56, (170, 20, 20)),
            ("Monday to Friday 9:00 - 17:30", "DejaVuSans.ttf", 30, (40, 40, 40)),
            ("Closed on public holidays", "DejaVuSans.ttf", 26, (40, 40, 40)),
        ],
        None,
    ),
    (
        "photo_lower_third",
        1280,
        720,
        "photo",
        [("Interview with Dr. Maria Lopez", "DejaVuSans-Bold.ttf", 42, (255, 255, 255))],
        (0, 0, 0),
    ),
    ("small_640_caption", 640, 360, (235, 235, 235), [("Recorded live in Lisbon 2019", "DejaVuSans.ttf", 24, (20, 60, 20))], None),
    # Words in the top corners of a 16:9 frame (what a square centre crop cuts off) above a
    # lower-third caption.
    (
        "corners_16x9",
        1280,
        720,
        "photo",
        [("Evening News", "DejaVuSans-Bold.ttf", 36, (255, 255, 255))],
        (150, 20, 20),
        [("LIVE", 40, 30), ("21:45", 1140, 30)],
    ),
    (
        "fullhd_two_lines",
        1920,
        1080,
        (10, 10, 10),
        [
            ("Season Finale", "DejaVuSerif-Bold.ttf", 110, (255, 255, 255)),
            ("Tomorrow at 8 pm on channel 4", "DejaVuSans.ttf", 52, (200, 200, 200)),
        ],
        None,
    ),
    ("blank_grey", 640, 360, (128, 128, 128), [], None),
]


def wheel_models():
    import rapidocr_onnxruntime

    root = os.path.join(os.path.dirname(rapidocr_onnxruntime.__file__), "models")
    return os.path.join(root, "ch_PP-OCRv4_det_infer.onnx"), os.path.join(root, "ch_PP-OCRv4_rec_infer.onnx")


def render(name, width, height, background, lines, bar, corners=()):
    from PIL import Image, ImageDraw, ImageFont

    if background == "photo":
        # A photo-like background (smooth colour gradients plus grain), seeded.
        rng = np.random.default_rng(7)
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        base = np.stack(
            [90 + 80 * np.sin(x / 170.0), 110 + 60 * np.cos(y / 90.0), 140 + 50 * np.sin((x + y) / 230.0)], axis=-1
        )
        base += rng.normal(0, 12, base.shape)
        img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    else:
        img = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(img)
    fonts = [ImageFont.truetype(os.path.join(FONT_DIR, f), size) for _, f, size, _ in lines]
    boxes = [draw.textbbox((0, 0), text, font=font) for (text, *_), font in zip(lines, fonts)]
    gap = 0.5
    total = sum(b[3] - b[1] for b in boxes) + sum(int(gap * (b[3] - b[1])) for b in boxes[1:])
    # Captions with a bar sit in the lower third, title cards in the middle.
    top = int(height * 0.78) if bar else (height - total) // 2
    if bar and lines:
        draw.rectangle([0, top - 24, width, top + total + 24], fill=bar)
    y = top
    for i, ((text, _, _, colour), font, b) in enumerate(zip(lines, fonts, boxes)):
        if i:
            y += int(gap * (b[3] - b[1]))
        w = b[2] - b[0]
        draw.text(((width - w) // 2 - b[0], y - b[1]), text, font=font, fill=colour)
        y += b[3] - b[1]
    corner_font = ImageFont.truetype(os.path.join(FONT_DIR, "DejaVuSans-Bold.ttf"), 32)
    for text, x, y in corners:
        b = draw.textbbox((x, y), text, font=corner_font)
        draw.rectangle([b[0] - 10, b[1] - 8, b[2] + 10, b[3] + 8], fill=(0, 0, 0))
        draw.text((x, y), text, font=corner_font, fill=(255, 255, 255))
    return img


def normalise(text):
    return " ".join(text.lower().split())


def main():
    model_id, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    det_src, rec_src = wheel_models()
    det_out, rec_out = os.path.join(out_dir, "det.onnx"), os.path.join(out_dir, "rec.onnx")
    fold_affines(det_src, det_out)
    fold_affines(rec_src, rec_out)
    rng = np.random.default_rng(5)
    same_outputs(det_src, det_out, [rng.standard_normal(s).astype(np.float32) for s in [(1, 3, 544, 960), (2, 3, 320, 96)]])
    same_outputs(rec_src, rec_out, [rng.standard_normal(s).astype(np.float32) for s in [(6, 3, 48, 320), (1, 3, 48, 800)]])

    rec = ort.InferenceSession(rec_src, providers=["CPUExecutionProvider"])
    chars = rec.get_modelmeta().custom_metadata_map["character"].splitlines()
    classes = rec.get_outputs()[0].shape[-1]
    # CTC classes: blank (0), the dictionary, then a space appended (as rapidocr's decoder does).
    if len(chars) + 2 != classes:
        raise SystemExit(f"dictionary has {len(chars)} characters, rec output has {classes} classes (expected +2)")
    if any(c == "" or "\n" in c or "\r" in c for c in chars):
        raise SystemExit("dictionary has an empty or multi-line entry")
    with open(os.path.join(out_dir, "keys.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(chars) + "\n")

    det_graph = graph_spec(det_out, "det.onnx")
    rec_graph = graph_spec(rec_out, "rec.onnx")
    spec = {
        "id": model_id,
        "role": "ocr",
        "source": "PyPI rapidocr-onnxruntime==1.4.4 (models/ch_PP-OCRv4_det_infer.onnx, ch_PP-OCRv4_rec_infer.onnx; "
        "scalar affines folded, see fold_affines)",
        "licence": "Apache-2.0",
        "graphs": [det_graph, rec_graph],
        "ocr": {
            "det_file": "det.onnx",
            "det_input": det_graph["inputs"][0]["name"],
            "det_output": det_graph["outputs"][0]["name"],
            # The longer side brought down to 960 (never up), rounded to a multiple of 32; crops
            # for recognition come from the picture itself. rapidocr's default (shorter side
            # up to 736) costs 1.9x the pixels on a 960x540 frame and read 3 of 30 random
            # 1920x1080 captions wrong where this read all (and 30/30 at 1280x720, 960x540).
            "det_limit_side": 960,
            "det_limit_type": "max",
            "det_max_side": 2000,
            # Per channel in 0..255 pixel units, in the graph's channel order (BGR: PaddleOCR
            # was trained on OpenCV pictures).
            "mean": [127.5, 127.5, 127.5],
            "std": [127.5, 127.5, 127.5],
            "bgr": True,
            "thresh": 0.3,
            "box_thresh": 0.5,
            "unclip_ratio": 1.6,
            "dilate": True,
            "min_box_side": 3,
            "max_candidates": 1000,
            "rec_file": "rec.onnx",
            "rec_input": rec_graph["inputs"][0]["name"],
            "rec_output": rec_graph["outputs"][0]["name"],
            "rec_height": 48,
            # Crops are padded to at least this width (rapidocr's 3x48x320), and at most
            # `rec_max_width` wide (a guard against a whole-frame-wide box).
            "rec_width": 320,
            "rec_max_width": 3200,
            "rec_batch": 6,
            "rec_interpolation": "cubic",
            "dictionary": "keys.txt",
            "blank": 0,
            "space_at_end": True,
            "text_score": 0.5,
        },
    }
    write_spec(out_dir, spec)

    golden(out_dir, spec["ocr"])


def fold_affines(src, dst):
    """Write `src` to `dst` with PP-LCNetV3's scalar affine blocks (`x * s + b` with learned
    scalars, after most convolutions and activations) and its hard-swishes (spelt as Add, Clip,
    Div, Mul) rewritten into ops ONNX Runtime runs in its blocked (NCHWc) CPU layout. As shipped,
    each of them made the runtime convert a whole feature map out of that layout and back:
    93 conversions in det, 63 in rec. Rewritten: 39 and 9, and det runs in about 0.6x the time,
    rec in about 0.4x (one thread, this machine). The algebra is exact; `same_outputs` checks it.

    - a convolution whose only reader is `* s (+ b)` takes them into its weights and bias;
    - `x * clip(x + 3, 0, 6) / 6` becomes `x * HardSigmoid(x)` (HardSwish needs opset 14);
    - `* s + b` read only by unpadded 1x1 convolutions goes into their weights and bias;
    - any other `* s + b` on a feature map becomes a BatchNormalization (a depthwise 1x1
      convolution in the blocked layout)."""
    import onnx
    from onnx import helper, numpy_helper, shape_inference

    m = onnx.load(src)
    g = m.graph
    opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    values = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    values.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in g.node if n.op_type == "Constant"})
    graph_outputs = {o.name for o in g.output}
    channels = {}
    for v in list(shape_inference.infer_shapes(m).graph.value_info) + list(g.input):
        dims = v.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].dim_value:
            channels[v.name] = dims[1].dim_value
    made = [0]

    def scalar(name):
        v = values.get(name)
        return None if v is None or v.size != 1 else float(v.reshape(()))

    def readers(name):
        return [n for n in g.node if name in n.input]

    def only_reader(name, op):
        r = readers(name)
        return r[0] if len(r) == 1 and r[0].op_type == op and name not in graph_outputs else None

    def constant_operand(node, x):
        """The scalar `node` applies to `x`, or None."""
        other = [i for i in node.input if i != x]
        return scalar(other[0]) if len(other) == 1 else None

    def new_input(node, k, array):
        # A new initializer each time: weights may be shared, and names may be Constant outputs.
        made[0] += 1
        name = f"folded_{made[0]}"
        values[name] = array.astype(np.float32)
        g.initializer.append(numpy_helper.from_array(values[name], name))
        if k < len(node.input):
            node.input[k] = name
        else:
            node.input.append(name)

    def bypass(first, last, to):
        """Remove the chain first..last and let last's readers read `to`."""
        for n in g.node:
            for k, i in enumerate(n.input):
                if i == last.output[0]:
                    n.input[k] = to

    def affine_after(x):
        """`x * s (+ b)` as (mul, add or None, s, b) when x's only reader starts one."""
        mul = only_reader(x, "Mul")
        s = constant_operand(mul, x) if mul else None
        if s is None:
            return None
        add = only_reader(mul.output[0], "Add")
        b = constant_operand(add, mul.output[0]) if add else None
        return (mul, add, s, b) if b is not None else (mul, None, s, 0.0)

    counts = {"into conv": 0, "hard-swish": 0, "into 1x1 conv": 0, "batch norm": 0}
    for conv in [n for n in g.node if n.op_type == "Conv"]:
        found = affine_after(conv.output[0])
        if not found:
            continue
        mul, add, s, b = found
        w = values[conv.input[1]]
        bias = values[conv.input[2]] if len(conv.input) > 2 else np.zeros(w.shape[0], np.float32)
        new_input(conv, 1, w * s)
        new_input(conv, 2, bias * s + b)
        bypass(mul, add or mul, conv.output[0])
        for n in (mul, add):
            if n is not None:
                g.node.remove(n)
        counts["into conv"] += 1
    for add in [n for n in g.node if n.op_type == "Add"]:
        if add not in g.node or 3.0 not in [scalar(i) for i in add.input]:
            continue
        x = next(i for i in add.input if scalar(i) != 3.0)
        clip = only_reader(add.output[0], "Clip")
        if not clip or len(clip.input) != 3 or (scalar(clip.input[1]), scalar(clip.input[2])) != (0.0, 6.0):
            continue
        # Divided by 6 before or after the product with x.
        first = only_reader(clip.output[0], "Div") or only_reader(clip.output[0], "Mul")
        second = first and only_reader(first.output[0], "Mul" if first.op_type == "Div" else "Div")
        if not second:
            continue
        div, mul = (first, second) if first.op_type == "Div" else (second, first)
        if scalar(div.input[1]) != 6.0 or x not in mul.input:
            continue
        at = list(g.node).index(add)
        for n in (add, clip, first, second):
            g.node.remove(n)
        gate, out = f"{add.name}_gate", second.output[0]
        if opset >= 14:
            g.node.insert(at, helper.make_node("HardSwish", [x], [out], name=gate))
        else:
            g.node.insert(at, helper.make_node("Mul", [x, gate], [out], name=f"{add.name}_swish"))
            g.node.insert(at, helper.make_node("HardSigmoid", [x], [gate], name=gate, alpha=1 / 6, beta=0.5))
        counts["hard-swish"] += 1
    for mul in [n for n in g.node if n.op_type == "Mul"]:
        if mul not in g.node:
            continue
        x = next((i for i in mul.input if scalar(i) is None), None)
        found = affine_after(x) if x is not None else None
        if not found or found[0] is not mul or found[1] is None:
            continue
        _, add, s, b = found
        convs = readers(add.output[0])

        def pointwise(c):
            if c.op_type != "Conv" or c.input[1] not in values:
                return False
            attrs = {a.name: helper.get_attribute_value(a) for a in c.attribute}
            return values[c.input[1]].shape[2:] == (1, 1) and not any(attrs.get("pads", [])) and attrs.get("group", 1) == 1

        if convs and all(pointwise(c) for c in convs) and add.output[0] not in graph_outputs:
            for c in convs:
                w = values[c.input[1]]
                bias = values[c.input[2]] if len(c.input) > 2 else np.zeros(w.shape[0], np.float32)
                new_input(c, 2, bias + b * w.sum(axis=(1, 2, 3)))
                new_input(c, 1, w * s)
            bypass(mul, add, x)
            g.node.remove(mul)
            g.node.remove(add)
            counts["into 1x1 conv"] += 1
        elif x in channels:
            c, eps = channels[x], 1e-5
            names = []
            for part, v in [("scale", s), ("bias", b), ("mean", 0.0), ("var", 1 - eps)]:
                names.append(f"{mul.name}_{part}")
                g.initializer.append(numpy_helper.from_array(np.full(c, v, np.float32), names[-1]))
            at = list(g.node).index(mul)
            g.node.remove(mul)
            g.node.remove(add)
            g.node.insert(at, helper.make_node("BatchNormalization", [x] + names, [add.output[0]], name=f"{mul.name}_bn", epsilon=eps))
            counts["batch norm"] += 1
    onnx.checker.check_model(m)
    onnx.save(m, dst)
    print(f"  {os.path.basename(src)}: affines and hard-swishes rewritten {counts}")


def same_outputs(a, b, inputs, tol=1e-4):
    """Graphs `a` and `b` give the same outputs (within `tol`) on every input."""
    sa, sb = (ort.InferenceSession(p, providers=["CPUExecutionProvider"]) for p in (a, b))
    name = sa.get_inputs()[0].name
    for x in inputs:
        diff = max(float(np.abs(ya - yb).max()) for ya, yb in zip(sa.run(None, {name: x}), sb.run(None, {name: x})))
        print(f"  {os.path.basename(b)} {list(x.shape)}: largest difference to the shipped graph {diff:.1e}")
        if diff > tol:
            raise SystemExit(f"{b}: the rewritten graph differs from {a} by {diff} (tolerance {tol})")


def reference_engine(ocr):
    """rapidocr's pipeline with the preprocessing the spec (and so the Rust adapter) uses:

    - detection input limited as `det_limit_side`/`det_limit_type` say (rapidocr's "max" mode
      quietly raises the limit to 960/1500/2000 by picture size; here the limit is the limit);
    - crops resized to the recognition height bicubically: rapidocr does it bilinearly, and
      small text (a 24 px caption in a 640x360 frame) then loses its spaces
      ("RecordedliveinLisbon2019"); bicubic keeps them.
    """
    import math
    import types

    import cv2
    from rapidocr_onnxruntime import RapidOCR
    from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess

    engine = RapidOCR()
    det = engine.text_det
    det.get_preprocess = lambda max_wh: DetPreProcess(ocr["det_limit_side"], ocr["det_limit_type"], det.mean, det.std)

    def resize_norm_img(self, img, max_wh_ratio):
        _, img_height, _ = self.rec_image_shape
        img_width = int(img_height * max_wh_ratio)
        h, w = img.shape[:2]
        resized_w = min(img_width, int(math.ceil(img_height * w / float(h))))
        resized = cv2.resize(img, (resized_w, img_height), interpolation=cv2.INTER_CUBIC).astype("float32")
        resized = (resized.transpose((2, 0, 1)) / 255 - 0.5) / 0.5
        padded = np.zeros((3, img_height, img_width), dtype=np.float32)
        padded[:, :, 0:resized_w] = resized
        return padded

    engine.text_rec.resize_norm_img = types.MethodType(resize_norm_img, engine.text_rec)
    return engine


def golden(out_dir, ocr):
    """rapidocr's own pipeline (with the spec's preprocessing, see `reference_engine`) must
    read every card exactly; keep the cards, the rendered texts and what it read."""
    from rapidocr_onnxruntime import RapidOCR

    if not os.path.isdir(FONT_DIR):
        raise SystemExit(f"no DejaVu fonts at {FONT_DIR}: install fonts-dejavu-core")
    stock = RapidOCR()
    engine = reference_engine(ocr)
    gdir = os.path.join(out_dir, "golden")
    os.makedirs(gdir, exist_ok=True)
    cases = []
    failed = []
    for name, width, height, background, lines, bar, *corners in CARDS:
        corners = corners[0] if corners else []
        img = render(name, width, height, background, lines, bar, corners)
        rgb = np.asarray(img, dtype=np.uint8)
        rgb.tofile(os.path.join(gdir, f"{name}.rgb"))
        img.save(os.path.join(gdir, f"{name}.png"))
        truth = [t for t, *_ in corners] + [t for t, *_ in lines]
        # A PIL image: rapidocr turns it to BGR itself. No angle classifier (captions are upright).
        result, _ = engine(img, use_cls=False)
        read = [{"text": t, "score": float(s), "box": np.asarray(b).tolist()} for b, t, s in (result or [])]
        stock_read = " ".join(r[1] for r in (stock(img, use_cls=False)[0] or []))
        got = " ".join(r["text"] for r in read)
        ok = normalise(got) == normalise(" ".join(truth))
        print(f"  {name}: read {got!r} ({'ok' if ok else 'expected ' + repr(' '.join(truth))}); stock rapidocr: {stock_read!r}")
        if not ok:
            failed.append(name)
        cases.append(
            {
                "name": name,
                "file": f"{name}.rgb",
                "width": width,
                "height": height,
                "lines": truth,
                "reference": read,
                "stock_rapidocr": stock_read,
            }
        )
    json.dump({"cases": cases}, open(os.path.join(gdir, "cards.json"), "w"), indent=1)
    if failed:
        raise SystemExit(f"golden check failed: the reference misread {failed}")


if __name__ == "__main__":
    main()
