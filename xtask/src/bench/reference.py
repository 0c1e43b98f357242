"""The plain Python pipeline `cargo xtask bench reference` measures medley against.

Written the way a researcher would write it with PyAV, onnxruntime and lancedb: the same
models, sampling and batch sizes as medley's `video-default` pipeline with the stages given
(vision, audio, music, sound events, text), one file after another, rows written to a LanceDB
table. Not a copy of medley's internals: each step is the obvious library call.

Per file: frames at 1 fps (first frame at or after each whole second), centre-cropped to a
square, resized to 224 (bicubic), EfficientNet-Lite0 in batches of 16 (embedding mean-pooled,
class probabilities averaged, the top 10 classes' label-text embeddings weighted into MiniLM's
space); the soundtrack decoded at 44.1 kHz mono, peak-normalised, cut into 101376-sample
windows for aiSFX (batches of 8, mean-pooled); decoded again at 16 kHz mono for the musicnn
tagger (47616-sample windows) and YAMNet (15600-sample windows), batches of 8; a one-line
description embedded with MiniLM; rows added to LanceDB every 32 files.

Usage: python reference.py --models DIR --db DIR [--stages vision,audio,music,sound_events] FILE...
Prints `result KEY VALUE` lines (wall seconds, media seconds, files, per-stage busy seconds).
"""

import argparse
import os
import resource
import sys
import time

import av
import lancedb
import numpy as np
import onnxruntime as ort
import pyarrow as pa
from PIL import Image
from tokenizers import Tokenizer

FPS = 1.0
FRAME_BATCH = 16
WINDOW_BATCH = 8
TOP_K = 10
COMMIT_EVERY = 32
busy = {}


def timed(stage, fn, *a):
    t = time.perf_counter()
    out = fn(*a)
    busy[stage] = busy.get(stage, 0.0) + time.perf_counter() - t
    return out


def session(path):
    o = ort.SessionOptions()
    o.intra_op_num_threads = os.cpu_count() or 1
    o.inter_op_num_threads = 1
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


class Text:
    def __init__(self, folder):
        self.s = session(os.path.join(folder, "model.onnx"))
        self.tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        self.tok.enable_truncation(256)
        self.tok.enable_padding()
        self.names = {i.name for i in self.s.get_inputs()}

    def embed(self, texts):
        out = []
        for i in range(0, len(texts), 64):
            enc = self.tok.encode_batch(texts[i : i + 64])
            ids = np.array([e.ids for e in enc], np.int64)
            feed = {"input_ids": ids, "attention_mask": np.array([e.attention_mask for e in enc], np.int64)}
            if "token_type_ids" in self.names:
                feed["token_type_ids"] = np.zeros_like(ids)
            out.append(self.s.run(None, feed)[0])
        v = np.concatenate(out)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def lines(path):
    with open(path) as f:
        return [l.rstrip("\n") for l in f]


def decode_frames(path):
    """RGB frames at 1 fps as 224x224 float arrays, centre-cropped."""
    frames = []
    with av.open(path) as c:
        if not c.streams.video:
            return frames
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        next_t = 0.0
        for f in c.decode(s):
            t = float(f.pts * s.time_base) if f.pts is not None else next_t
            if t + 1e-6 < next_t:
                continue
            next_t = (int(t * FPS) + 1) / FPS
            im = f.to_image()
            w, h = im.size
            side = min(w, h)
            im = im.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
            im = im.resize((224, 224), Image.BICUBIC)
            frames.append(((np.asarray(im, np.float32) - 127.0) / 128.0).transpose(2, 0, 1))
    return frames


def decode_audio(path, rate):
    with av.open(path) as c:
        if not c.streams.audio:
            return np.zeros(0, np.float32)
        r = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks = []
        for f in c.decode(c.streams.audio[0]):
            for o in r.resample(f):
                chunks.append(o.to_ndarray().reshape(-1))
        for o in r.resample(None):
            chunks.append(o.to_ndarray().reshape(-1))
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def windows(x, n):
    k = len(x) // n
    return [x[i * n : (i + 1) * n] for i in range(k)]


def batched(sess, feed_name, items, batch, outputs=None):
    outs = []
    for i in range(0, len(items), batch):
        outs.append(sess.run(outputs, {feed_name: np.stack(items[i : i + batch]).astype(np.float32)}))
    return outs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--stages", default="vision,audio,music,sound_events")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    stages = set(a.stages.split(","))
    m = a.models
    t0 = time.perf_counter()
    text = Text(os.path.join(m, "minilm-l6"))
    vision = session(os.path.join(m, "efficientnet-lite0/model.onnx"))
    label_texts = lines(os.path.join(m, "efficientnet-lite0/label_texts.txt"))
    labels = lines(os.path.join(m, "efficientnet-lite0/labels.txt"))
    cache = os.path.join(a.db + ".labels.npy")
    if os.path.exists(cache):
        label_emb = np.load(cache)
    else:
        label_emb = text.embed(["a photo of a " + t for t in label_texts])
        np.save(cache, label_emb)
    aisfx = session(os.path.join(m, "aisfx/model.onnx")) if "audio" in stages else None
    mtt = session(os.path.join(m, "musicnn-mtt/model.onnx")) if "music" in stages else None
    tags = lines(os.path.join(m, "musicnn-mtt/labels.txt")) if mtt else []
    yam = session(os.path.join(m, "yamnet/model.onnx")) if "sound_events" in stages else None
    yam_in = yam.get_inputs()[0].name if yam else None
    yam_labels = lines(os.path.join(m, "yamnet/labels.txt")) if yam else []
    busy["load"] = time.perf_counter() - t0

    db = lancedb.connect(a.db)
    table = None
    rows = []
    media_s = 0.0
    files = 0

    schema = pa.schema(
        [
            ("path", pa.string()),
            ("duration_s", pa.float64()),
            ("visual", pa.list_(pa.float32(), 1280)),
            ("bridge", pa.list_(pa.float32(), 384)),
            ("audio", pa.list_(pa.float32(), 512)),
            ("description", pa.string()),
            ("text", pa.list_(pa.float32(), 384)),
        ]
    )

    def flush():
        nonlocal table, rows
        if rows:
            batch = pa.Table.from_pylist(rows, schema=schema)
            if table is None:
                table = db.create_table("media", batch, mode="overwrite", on_bad_vectors="null")
            else:
                table.add(batch, on_bad_vectors="null")
            rows = []

    for path in a.files:
        try:
            with av.open(path) as c:
                duration = float(c.duration) / av.time_base if c.duration else 0.0
        except av.error.FFmpegError as e:
            print(f"skip {path}: {e}", file=sys.stderr)
            continue
        files += 1
        media_s += duration
        row = {"path": path, "duration_s": duration}
        words = []
        frames = timed("decode", decode_frames, path) if "vision" in stages else []
        if frames:
            outs = timed("vision", batched, vision, "pixel_values", frames, FRAME_BATCH, ["embedding", "logits"])
            emb = np.concatenate([o[0] for o in outs])
            logits = np.concatenate([o[1] for o in outs])
            p = np.exp(logits - logits.max(1, keepdims=True))
            p = (p / p.sum(1, keepdims=True)).mean(0)
            top = np.argsort(-p)[:TOP_K]
            bridge = (p[top, None] * label_emb[top]).sum(0)
            row["visual"] = emb.mean(0).tolist()
            row["bridge"] = (bridge / np.linalg.norm(bridge)).tolist()
            words.append("looks like: " + ", ".join(labels[i] for i in top[:3]))
        if aisfx is not None:
            x = timed("decode", decode_audio, path, 44100)
            if len(x):
                x = x / max(float(np.abs(x).max()), 1e-9)
                w = windows(x, 101376)
                if w:
                    outs = timed("audio", batched, aisfx, "waveform", w, WINDOW_BATCH)
                    row["audio"] = np.concatenate([o[0] for o in outs]).mean(0).tolist()
        if mtt is not None or yam is not None:
            x = timed("decode", decode_audio, path, 16000)
            if mtt is not None and len(windows(x, 47616)):
                outs = timed("music", batched, mtt, "waveform", windows(x, 47616), WINDOW_BATCH, ["tags"])
                t = np.concatenate([o[0] for o in outs]).mean(0)
                words.append("sounds like: " + ", ".join(tags[i] for i in np.argsort(-t)[:3]))
            if yam is not None and len(windows(x, 15600)):
                outs = timed("sounds", batched, yam, yam_in, windows(x, 15600), WINDOW_BATCH, ["probabilities"])
                pr = np.concatenate([o[0] for o in outs])
                pr = 0.5 * (pr.mean(0) + pr.max(0))
                words.append("hears: " + ", ".join(yam_labels[i] for i in np.argsort(-pr)[:3]))
        row["description"] = "; ".join(words)
        row["text"] = timed("text", text.embed, [row["description"] or os.path.basename(path)])[0].tolist()
        for k in ("visual", "bridge", "audio"):
            row.setdefault(k, None)
        rows.append(row)
        if len(rows) >= COMMIT_EVERY:
            timed("write", flush)
    timed("write", flush)
    wall = time.perf_counter() - t0
    print(f"result wall_s {wall:.3f}")
    print(f"result media_s {media_s:.3f}")
    print(f"result files {files}")
    print(f"result peak_rss_mib {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f}")
    for k, v in sorted(busy.items()):
        print(f"result busy_{k} {v:.3f}")


if __name__ == "__main__":
    main()
