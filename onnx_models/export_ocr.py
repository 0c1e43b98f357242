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
    shutil.copyfile(det_src, os.path.join(out_dir, "det.onnx"))
    shutil.copyfile(rec_src, os.path.join(out_dir, "rec.onnx"))

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

    det_graph = graph_spec(det_src, "det.onnx")
    rec_graph = graph_spec(rec_src, "rec.onnx")
    spec = {
        "id": model_id,
        "role": "ocr",
        "source": "PyPI rapidocr-onnxruntime==1.4.4 (models/ch_PP-OCRv4_det_infer.onnx, ch_PP-OCRv4_rec_infer.onnx)",
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
