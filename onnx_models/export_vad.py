"""Silero VAD (voice activity) from the silero-vad==6.2.3 wheel: the shipped 16 kHz ONNX graph
(`silero_vad/data/silero_vad_16k_op15.onnx`), copied unchanged.

Usage: python export_vad.py silero-vad OUT_DIR

Graph: input [B, 576] (16 kHz mono: the previous chunk's last 64 samples, then 512 new ones,
32 ms), state [2, B, 128] (the recurrent state, zeros at the start), sr (int64 scalar, 16000)
-> output [B, 1] (speech probability of the 512 new samples), stateN [2, B, 128] (fed back as
`state` for the next chunk). The 64-sample context is what silero_vad's `OnnxWrapper` (v5 and
later) prepends to every chunk; the Rust adapter (crates/medley-models/src/vad.rs) does the same.

Checks, on real audio (the five LibriVox clips of Debian's pocketsphinx-testdata with 1 s of
silence after each, and the first 60 s of 1918.mp3, an instrumental of the sample media, both
fetched into MEDLEY_HOME the way `cargo xtask` does when missing):
- the graph, driven by the package's own `OnnxWrapper.audio_forward`, against the package's
  PyTorch (TorchScript) model on every chunk: probabilities within 1e-4;
- what the model is for: speech found over most of each clip, none in the music with
  silero_vad's default region settings.
Golden tensors, per file: the waveform, the package's probabilities, and the speech regions
`get_speech_timestamps` returns (sample ranges) for three settings (silero_vad's defaults,
medley's for transcription, and a wider one), for the Rust adapter's tests.
"""

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

from medley_common import graph_spec, save_golden, write_spec

RATE, CHUNK, CONTEXT, STATE = 16000, 512, 64, 128
SHIPPED = "silero_vad_16k_op15.onnx"
HOME = os.environ.get("MEDLEY_HOME", os.path.expanduser("~/.cache/medley"))
# (threshold, min_speech_ms, min_silence_ms, speech_pad_ms): silero_vad's defaults, medley's
# settings for transcription (crates/medley-models/src/vad.rs, VadOptions::for_transcription),
# and faster-whisper's wider ones.
SETTINGS = [(0.5, 250, 100, 30), (0.5, 250, 500, 400), (0.5, 250, 2000, 400)]


def package_dir():
    import importlib.util

    spec = importlib.util.find_spec("silero_vad")
    if spec is None:
        raise SystemExit("silero_vad is not installed: it is in onnx_models/models.txt")
    return spec.submodule_search_locations[0]


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
    """1918.mp3 of the sample media (the arcade wheel), from the wheel when the media is not
    fetched yet (the wheel goes where `cargo xtask media` looks for it)."""
    mp3 = os.path.join(HOME, "media/music/1918.mp3")
    if os.path.exists(mp3):
        return mp3
    downloads = os.path.join(HOME, "downloads")
    wheels = glob.glob(os.path.join(downloads, "arcade-3.3.3-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
                        "--only-binary", ":all:", "-d", downloads, "arcade==3.3.3"], check=True)
        wheels = glob.glob(os.path.join(downloads, "arcade-3.3.3-*.whl"))
    out = os.path.join(tempfile.mkdtemp(), "1918.mp3")
    with zipfile.ZipFile(wheels[0]) as z:
        with open(out, "wb") as f:
            f.write(z.read("arcade/resources/assets/music/1918.mp3"))
    return out


def test_audio():
    """Real 16 kHz audio, named: speech (each clip then 1 s of silence) and music. Returns
    also where each clip lies in the speech, in samples."""
    parts, clips, at = [], [], 0
    for f in speech_files():
        wave = decode(f)
        clips.append((at, at + len(wave)))
        parts += [wave, np.zeros(RATE, dtype=np.float32)]
        at += len(wave) + RATE
    return {"speech": np.concatenate(parts), "music": decode(music_file(), seconds=60)}, clips


def regions(timestamps):
    return np.array([[t["start"], t["end"]] for t in timestamps], dtype=np.int64).reshape(-1, 2)


def main():
    model_id, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "model.onnx")
    shutil.copyfile(os.path.join(package_dir(), "data", SHIPPED), path)

    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad

    torch.set_num_threads(1)
    onnx_model = load_silero_vad(onnx=True, opset_version=15)  # this very file, in OnnxWrapper
    jit_model = load_silero_vad(onnx=False)  # the package's PyTorch model

    audio, clips = test_audio()
    settings = np.array(SETTINGS, dtype=np.float32)
    for name, wave in audio.items():
        x = torch.from_numpy(wave)
        probs = onnx_model.audio_forward(x, RATE).numpy()[0].astype(np.float32)
        ref = jit_model.audio_forward(x, RATE).numpy()[0]
        diff = float(np.max(np.abs(probs - ref)))
        print(f"  {name}: {len(probs)} chunks, max|onnx - torch| = {diff:.2e} (tolerance 1e-4)")
        if not diff <= 1e-4:
            raise SystemExit(f"golden check failed for {name}: ONNX and PyTorch differ by {diff}")
        found = {}
        for i, (threshold, min_speech, min_silence, pad) in enumerate(SETTINGS):
            ts = get_speech_timestamps(x, onnx_model, threshold=threshold, sampling_rate=RATE,
                                       min_speech_duration_ms=min_speech, min_silence_duration_ms=min_silence,
                                       speech_pad_ms=pad)
            found[f"regions_{i}"] = regions(ts)
            print(f"  {name}: {len(ts)} regions with {SETTINGS[i]}: "
                  f"{[(round(t['start'] / RATE, 2), round(t['end'] / RATE, 2)) for t in ts]}")
        if name == "speech":
            # Every clip is mostly inside speech regions (silero's defaults).
            r = found["regions_0"]
            for start, end in clips:
                covered = sum(max(0, min(end, e) - max(start, s)) for s, e in r) / (end - start)
                if not covered >= 0.8:
                    raise SystemExit(f"speech check failed: a LibriVox clip is {covered:.0%} inside speech regions")
        elif len(found["regions_0"]):
            raise SystemExit(f"music check failed: speech regions in an instrumental: {found['regions_0']}")
        # Same graph on the Rust side, other threads and onnxruntime build: float noise only
        # (measured 6e-6 between ONNX and PyTorch).
        save_golden(out_dir, name, {"waveform": wave, "settings": settings}, {"probabilities": probs, **found}, 1e-4)

    write_spec(out_dir, {
        "id": model_id, "role": "vad",
        "source": "PyPI silero-vad==6.2.3 (silero_vad/data/silero_vad_16k_op15.onnx, Silero VAD v6)",
        "licence": "MIT",
        "graphs": [graph_spec(path, "model.onnx")],
        "vad": {"file": "model.onnx", "input": "input", "state": "state", "rate_input": "sr", "output": "output",
                "state_output": "stateN", "sample_rate": RATE, "chunk": CHUNK, "context": CONTEXT,
                "state_size": STATE},
    })
    print(f"exported {model_id} to {out_dir}")


if __name__ == "__main__":
    main()
