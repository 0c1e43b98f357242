"""PyTorch baseline for the image encoder on the lent GPU: the same architecture as the
exported efficientnet-lite0 graph (timm `tf_efficientnet_lite0`, random weights: speed does
not depend on them), fp16 and fp32, channels-last, input already on the GPU, cuDNN autotuned.
Prints `result torch/<dtype>/b<B> IMAGES_PER_S` lines like `model_bench`.

usage: python3 torch_bench.py [BATCH ...]
"""

import sys
import time

import timm
import torch


def bench(model, x, seconds=1.0):
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        torch.cuda.synchronize()
        runs, start = 0, time.perf_counter()
        while True:
            model(x)
            runs += 1
            if runs >= 5:
                torch.cuda.synchronize()
                if time.perf_counter() - start >= seconds:
                    break
        return runs * x.shape[0] / (time.perf_counter() - start)


def main():
    batches = [int(b) for b in sys.argv[1:]] or [32, 128, 256]
    torch.backends.cudnn.benchmark = True
    base = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000).eval().cuda()
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}", flush=True)
    for dtype, name in [(torch.float16, "fp16"), (torch.float32, "fp32")]:
        model = base.to(dtype=dtype, memory_format=torch.channels_last)
        for b in batches:
            x = torch.randn(b, 3, 224, 224, device="cuda", dtype=dtype).to(memory_format=torch.channels_last)
            print(f"result torch/{name}/b{b} {bench(model, x):.1f}", flush=True)


if __name__ == "__main__":
    main()
