"""Tune the image and sound-event label bridges on sets of their own, and write their class priors.

Usage: python measure_bridge.py [--work DIR] [--write-prior]
Run it with the export env (~/.cache/medley/venv-export/bin/python) after `cargo xtask models`,
with ffmpeg on PATH and apt-get (it downloads Debian's `tuxpaint-stamps-default`, 161 MB, into
--work; nothing is installed).

The tuning set is Tux Paint's stamps: 785 drawings (PNG) with an English line each ("A brown
potato.", "A European coin of 20 cents"), a set apart from the GCompris pictures that
`cargo xtask eval` scores, so what is tuned here is not tuned on the evaluation. Stamps are
split in two by position: the even half measures the prior (each class's mean probability),
the odd half is ranked by its own captions among itself.

Knobs, as crates/medley-models/src/bridge.rs and colour.rs apply them:
  k, T   the top k classes, weights p^(1/T)
  a      weights divided by prior^a
  w      the colours' vector (shares squared, "the colour {}") added at weight w
--write-prior writes label_priors/efficientnet-lite0.txt (the prior over all stamps at the
chosen temperature), which export.py copies into the model folder as label_prior.txt.

Sounds: the 107 stamp sounds with an English caption (animals, tools, instruments, vehicles;
not the spoken names and letters), heard by YAMNet as medley does (0.975 s windows, each class
pooled as the mean of its mean and max), half for the prior, half ranked by caption. --write-prior
also writes label_priors/yamnet.txt (over all 107), which export_yamnet.py copies.
"""

import argparse
import glob
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import measure_label_texts as m  # noqa: E402

NAMES = ["black", "white", "grey", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown"]
PROTO = np.array([(0, 0, 0), (255, 255, 255), (128, 128, 128), (220, 20, 30), (255, 140, 0), (255, 225, 0),
                  (30, 160, 40), (30, 80, 220), (120, 40, 160), (255, 105, 180), (120, 70, 30)], np.float64)
CHOSEN = dict(k=100, T=1.5, a=0.5, w=0.2)
SOUND_CHOSEN = dict(k=30, a=0.5)


def stamps(work):
    root = os.path.join(work, "tux")
    if not os.path.isdir(os.path.join(root, "x")):
        os.makedirs(root, exist_ok=True)
        subprocess.check_call(["apt-get", "download", "tuxpaint-stamps-default"], cwd=root)
        deb = glob.glob(os.path.join(root, "tuxpaint-stamps-default_*.deb"))[0]
        subprocess.check_call(["dpkg", "-x", deb, os.path.join(root, "x")])
    items = []
    for t in sorted(glob.glob(os.path.join(root, "x/usr/share/tuxpaint/stamps/**/*.txt"), recursive=True)):
        png = t[:-4] + ".png"
        first = open(t, errors="replace").readline().strip()
        if os.path.exists(png) and first and "=" not in first:
            items.append((png, first))
    return items


def logits(paths, work):
    import onnxruntime as ort
    cache = os.path.join(work, "tux_logits_fitted.npz")
    if os.path.exists(cache):
        z = np.load(cache, allow_pickle=True)
        if list(z["keys"]) == paths:
            return z["l"], z["colours"]
    sess = ort.InferenceSession(os.path.join(m.MODELS, "efficientnet-lite0", "model.onnx"),
                                providers=["CPUExecutionProvider"])
    out, colours = [], []
    for i in range(0, len(paths), 16):
        px = [m.rgb224(p, work) for p in paths[i:i + 16]]
        colours.extend(colour_shares(p) for p in px)
        x = ((np.stack(px).astype(np.float32) - 127.0) / 128.0).transpose(0, 3, 1, 2)
        out.append(sess.run(["logits"], {"pixel_values": np.ascontiguousarray(x)})[0])
    lg, colours = np.concatenate(out), np.stack(colours)
    np.savez(cache, keys=np.array(paths, dtype=object), l=lg, colours=colours)
    return lg, colours


def lab(rgb):
    c = rgb / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    mat = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = c @ mat.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def colour_shares(px):
    """As medley_models::colour_shares (exact CIELAB here, a 5-bit table there)."""
    side = px.shape[0]
    cls = np.argmin(((lab(px.reshape(-1, 3).astype(np.float64))[:, None] - lab(PROTO)[None]) ** 2).sum(-1), 1)
    grid = cls.reshape(side, side)
    border = np.concatenate([grid[0], grid[-1], grid[:, 0], grid[:, -1]])
    bg = np.bincount(border, minlength=11).argmax()
    fg = cls[cls != bg] if (cls != bg).mean() >= 0.05 else cls
    return np.bincount(fg, minlength=11) / len(fg)


def softmax(lg, t):
    z = lg / t
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def bridges(lg, colours, labels, col, prior, k, t, a, w):
    p = softmax(lg, t) / prior ** a
    b = m.bridge(p / p.sum(1, keepdims=True), labels, k)
    return unit(b + w * unit((colours ** 2) @ col)) if w else b


def stamp_sounds(work):
    """(ogg, caption) of the stamps whose sound is the thing's, not its name said."""
    import re
    root = os.path.join(work, "tux", "x/usr/share/tuxpaint/stamps")
    items = []
    for f in sorted(glob.glob(os.path.join(root, "**/*.ogg"), recursive=True)):
        name = os.path.basename(f)
        if "_desc" in name or "/symbols/" in f or re.search(r"_[a-z][a-z](_[A-Z][A-Z])?\.ogg$", name):
            continue
        t = f[:-4] + ".txt"
        first = open(t, errors="replace").readline().strip() if os.path.exists(t) else ""
        if first and "=" not in first:
            items.append((f, first))
    return items


def sound_probabilities(paths, work):
    import onnxruntime as ort
    cache = os.path.join(work, "tux_sounds.npz")
    if os.path.exists(cache):
        z = np.load(cache, allow_pickle=True)
        if list(z["keys"]) == paths:
            return z["p"]
    sess = ort.InferenceSession(os.path.join(m.MODELS, "yamnet", "model.onnx"), providers=["CPUExecutionProvider"])
    out = []
    for f in paths:
        raw = subprocess.check_output(["ffmpeg", "-loglevel", "error", "-i", f, "-ac", "1", "-ar", "16000",
                                       "-f", "f32le", "-"])
        x = np.frombuffer(raw, np.float32).copy()
        n = max(1, -(-len(x) // 15600))
        p = sess.run(["probabilities"], {"waveform": np.pad(x, (0, n * 15600 - len(x))).reshape(n, 15600)})[0]
        out.append((p.mean(0) + p.max(0)) / 2)
    p = np.stack(out)
    np.savez(cache, keys=np.array(paths, dtype=object), p=p)
    return p


def measure_sounds(args, text):
    items = stamp_sounds(args.work)
    p = sound_probabilities([f for f, _ in items], args.work)
    texts = open(os.path.join(m.MODELS, "yamnet", "label_texts.txt")).read().splitlines()
    labels = m.label_matrix(text, texts, "{}")
    queries = text([c for _, c in items])
    fit = np.arange(len(items)) % 2 == 0
    score = ~fit
    print(f"\n{len(items)} stamp sounds: prior from {fit.sum()}, ranked {score.sum()}")

    def run(k, a):
        w = p[score] / (p[fit].mean(0) + 1e-4) ** a
        b = m.bridge(w, labels, k)
        sims = queries[score] @ b.T
        r = np.array([1 + int(np.sum(s > s[i])) for i, s in enumerate(sims)])
        return f"R@1 {np.mean(r <= 1):.3f} R@5 {np.mean(r <= 5):.3f} MRR {np.mean(1 / r):.3f} median {np.median(r):.0f}"

    print("before (k 10):", run(10, 0))
    for k in [10, 30, 100]:
        for a in [0, 0.5, 1.0]:
            print(f"k {k} a {a}:", run(k, a))
    if args.write_prior:
        out = os.path.join(HERE, "label_priors", "yamnet.txt")
        np.savetxt(out, p.mean(0) + 1e-4, fmt="%.6g")
        print("wrote", out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=os.path.join(m.HOME, "bridge-tuning"))
    ap.add_argument("--write-prior", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    items = stamps(args.work)
    lg, colours = logits([p for p, _ in items], args.work)
    text = m.Text()
    text.load(os.path.join(args.work, "text.pkl"))
    texts = open(os.path.join(m.MODELS, "efficientnet-lite0", "label_texts.txt")).read().splitlines()
    labels = m.label_matrix(text, texts, "a photo of a {}")
    col = text(["the colour " + n for n in NAMES])
    queries = text([c for _, c in items])
    text.save()
    fit = np.arange(len(items)) % 2 == 0
    score = ~fit
    print(f"{len(items)} stamps: prior from {fit.sum()}, ranked {score.sum()}")

    def run(k, t, a, w):
        prior = softmax(lg[fit], t).mean(0) + 1e-4
        b = bridges(lg[score], colours[score], labels, col, prior, k, t, a, w)
        sims = queries[score] @ b.T
        r = np.array([1 + int(np.sum(s > s[i])) for i, s in enumerate(sims)])
        return f"R@1 {np.mean(r <= 1):.3f} R@5 {np.mean(r <= 5):.3f} MRR {np.mean(1 / r):.3f} median {np.median(r):.0f}"

    print("before (k 10, T 1):", run(10, 1.0, 0, 0))
    for k in [10, 100]:
        for t in [1.0, 1.5, 2.0]:
            for a in [0, 0.5, 1.0]:
                print(f"k {k} T {t} a {a}:", run(k, t, a, 0))
    for w in [0.2, 0.35, 0.5]:
        print(f"chosen + colours w {w}:", run(CHOSEN["k"], CHOSEN["T"], CHOSEN["a"], w))
    if args.write_prior:
        prior = softmax(lg, CHOSEN["T"]).mean(0) + 1e-4
        out = os.path.join(HERE, "label_priors", "efficientnet-lite0.txt")
        np.savetxt(out, prior, fmt="%.6g")
        print("wrote", out)
    measure_sounds(args, text)
    text.save()


if __name__ == "__main__":
    main()
