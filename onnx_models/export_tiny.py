"""Tiny, randomly initialised models of the real transformers architectures users bring as
ONNX files (no registry package carries CLIP, CLAP or captioner weights): the wiring, shapes
and interfaces are real, the weights are not. Exported through the same model.toml so the Rust
adapters load them like any other model.

Usage: python export_tiny.py tiny-clip|tiny-clap|tiny-captioner OUT_DIR
  tiny-clip       CLIPModel: image tower pixel_values [B,3,32,32] -> image_embeds [B,16];
                  text tower input_ids/attention_mask -> text_embeds [B,16]
  tiny-clap       ClapModel (HTSAT audio + RoBERTa text): waveform [B,16128] (log-mel in the
                  graph) -> audio_embeds [B,16]; text -> text_embeds [B,16]
  tiny-captioner  VisionEncoderDecoderModel (ViT + GPT-2 with cross-attention): encoder.onnx
                  pixel_values -> encoder_hidden_states; decoder.onnx input_ids + past -> logits
"""

import os
import sys

import numpy as np
import torch

from export import LogMelFrontEnd, export
from medley_common import check_onnx, graph_spec, save_golden, write_spec

WORDS = ("a photo of dog cat bird car tree sky sea music guitar piano drums voice loud quiet fast slow "
         "red green blue small big the on in with and is are playing sitting flying").split()
PAD, UNK, BOS, EOS = 0, 1, 2, 3
CLIP_MEAN = [0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255]
CLIP_STD = [0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255]


def tiny_tokenizer(out_dir):
    """A word-level tokenizer.json built with the `tokenizers` library (no hub download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, normalizers, decoders

    vocab = {"[PAD]": PAD, "[UNK]": UNK, "<s>": BOS, "</s>": EOS}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", BOS), ("</s>", EOS)])
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens(["[PAD]", "[UNK]", "<s>", "</s>"])
    tok.enable_padding(pad_id=PAD, pad_token="[PAD]")
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    return tok, len(vocab)


def text_golden(tok):
    enc = tok.encode_batch(["a photo of a dog", "music that is loud and fast"])
    ids = np.array([e.ids for e in enc], np.int64)
    mask = np.array([e.attention_mask for e in enc], np.int64)
    return ids, mask


def export_clip(out_dir):
    from transformers import CLIPConfig, CLIPModel

    tok, vocab = tiny_tokenizer(out_dir)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=vocab, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
                         max_position_embeddings=64, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                           num_attention_heads=2),
        projection_dim=16)
    model = CLIPModel(cfg).eval()

    class Image(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, pixel_values):
            return self.m.get_image_features(pixel_values=pixel_values)

    class Text(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, input_ids, attention_mask):
            return self.m.get_text_features(input_ids=input_ids, attention_mask=attention_mask)

    p_img, p_txt = os.path.join(out_dir, "image.onnx"), os.path.join(out_dir, "text.onnx")
    x = np.random.default_rng(1).standard_normal((3, 3, 32, 32)).astype(np.float32)
    export(Image(), (torch.from_numpy(x),), p_img, ["pixel_values"], ["image_embeds"], {"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}})
    ids, mask = text_golden(tok)
    export(Text(), (torch.from_numpy(ids), torch.from_numpy(mask)), p_txt, ["input_ids", "attention_mask"], ["text_embeds"],
           {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}, "text_embeds": {0: "batch"}})
    with torch.no_grad():
        ri = Image()(torch.from_numpy(x)).numpy()
        rt = Text()(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    check_onnx(out_dir, "image", p_img, {"pixel_values": x}, {"image_embeds": ri}, 1e-4)
    check_onnx(out_dir, "text", p_txt, {"input_ids": ids, "attention_mask": mask}, {"text_embeds": rt}, 1e-4)
    write_spec(out_dir, {
        "id": "tiny-clip", "role": "dual_image_text", "source": "random weights, transformers CLIPModel", "licence": "n/a",
        "graphs": [graph_spec(p_img, "image.onnx"), graph_spec(p_txt, "text.onnx")],
        "image": {"file": "image.onnx", "input": "pixel_values", "size": 32, "mean": CLIP_MEAN, "std": CLIP_STD,
                  "embedding": "image_embeds", "dim": 16, "normalize": True},
        "text": {"file": "text.onnx", "tokenizer": "tokenizer.json", "layout": "padded", "input_ids": "input_ids",
                 "attention_mask": "attention_mask", "embedding": "text_embeds", "dim": 16, "max_length": 64, "normalize": True},
    })


CLAP_RATE, CLAP_WINDOW = 16000, 63 * 256


def export_clap(out_dir):
    from transformers import ClapConfig, ClapModel

    tok, vocab = tiny_tokenizer(out_dir)
    cfg = ClapConfig(
        text_config=dict(vocab_size=vocab, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
                         max_position_embeddings=72, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS, type_vocab_size=1),
        audio_config=dict(spec_size=64, num_mel_bins=64, patch_size=4, patch_stride=(4, 4), window_size=4, depths=[1, 1],
                          num_attention_heads=[2, 2], patch_embeds_hidden_size=16, hidden_size=32, enable_fusion=False,
                          projection_hidden_size=32),
        projection_dim=16, projection_hidden_act="relu")
    model = ClapModel(cfg).eval()

    class Audio(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.front = LogMelFrontEnd(CLAP_RATE, 512, 256, 64)
            self.m = model

        def forward(self, waveform):
            mel = self.front(waveform)[:, None]  # [B, 1, T=64, 64]
            return self.m.get_audio_features(input_features=mel)

    class Text(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, input_ids, attention_mask):
            return self.m.get_text_features(input_ids=input_ids, attention_mask=attention_mask)

    p_aud, p_txt = os.path.join(out_dir, "audio.onnx"), os.path.join(out_dir, "text.onnx")
    rng = np.random.default_rng(2)
    x = (0.3 * rng.standard_normal((3, CLAP_WINDOW))).astype(np.float32)
    export(Audio(), (torch.from_numpy(x),), p_aud, ["waveform"], ["audio_embeds"], {"waveform": {0: "batch"}, "audio_embeds": {0: "batch"}})
    ids, mask = text_golden(tok)
    export(Text(), (torch.from_numpy(ids), torch.from_numpy(mask)), p_txt, ["input_ids", "attention_mask"], ["text_embeds"],
           {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}, "text_embeds": {0: "batch"}})
    with torch.no_grad():
        ra = Audio()(torch.from_numpy(x)).numpy()
        rt = Text()(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    check_onnx(out_dir, "audio", p_aud, {"waveform": x}, {"audio_embeds": ra}, 1e-4)
    check_onnx(out_dir, "text", p_txt, {"input_ids": ids, "attention_mask": mask}, {"text_embeds": rt}, 1e-4)
    write_spec(out_dir, {
        "id": "tiny-clap", "role": "dual_audio_text", "source": "random weights, transformers ClapModel", "licence": "n/a",
        "graphs": [graph_spec(p_aud, "audio.onnx"), graph_spec(p_txt, "text.onnx")],
        "audio": {"file": "audio.onnx", "input": "waveform", "sample_rate": CLAP_RATE, "window": CLAP_WINDOW,
                  "embedding": "audio_embeds", "dim": 16, "normalize": True},
        "text": {"file": "text.onnx", "tokenizer": "tokenizer.json", "layout": "padded", "input_ids": "input_ids",
                 "attention_mask": "attention_mask", "embedding": "text_embeds", "dim": 16, "max_length": 64, "normalize": True},
    })


def export_captioner(out_dir):
    from transformers import GPT2Config, GPT2LMHeadModel, ViTConfig, ViTModel, VisionEncoderDecoderModel

    tok, vocab = tiny_tokenizer(out_dir)
    enc = ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                             num_attention_heads=2), add_pooling_layer=False)
    dec = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=64, n_embd=32, n_layer=2, n_head=2, bos_token_id=BOS,
                                     eos_token_id=EOS, add_cross_attention=True, attn_implementation="eager"))
    model = VisionEncoderDecoderModel(encoder=enc, decoder=dec).eval()
    n_layer, heads, head_dim = 2, 2, 16

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model.encoder

        def forward(self, pixel_values):
            return self.m(pixel_values=pixel_values).last_hidden_state

    class Decoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model.decoder

        def forward(self, input_ids, encoder_hidden_states, *past):
            pkv = tuple((past[2 * i], past[2 * i + 1]) for i in range(n_layer))
            out = self.m(input_ids=input_ids, encoder_hidden_states=encoder_hidden_states, past_key_values=pkv, use_cache=True)
            return (out.logits, *[t for kv in out.past_key_values for t in kv[:2]])

    p_enc, p_dec = os.path.join(out_dir, "encoder.onnx"), os.path.join(out_dir, "decoder.onnx")
    x = np.random.default_rng(4).standard_normal((2, 3, 32, 32)).astype(np.float32)
    export(Encoder(), (torch.from_numpy(x),), p_enc, ["pixel_values"], ["encoder_hidden_states"],
           {"pixel_values": {0: "batch"}, "encoder_hidden_states": {0: "batch"}})
    with torch.no_grad():
        hidden = Encoder()(torch.from_numpy(x))
    check_onnx(out_dir, "encoder", p_enc, {"pixel_values": x}, {"encoder_hidden_states": hidden.numpy()}, 1e-4)
    past_names = [f"past_{kv}.{i}" for i in range(n_layer) for kv in "kv"]
    present_names = [f"present_{kv}.{i}" for i in range(n_layer) for kv in "kv"]
    dummy = [torch.zeros(2, heads, 1, head_dim) for _ in past_names]
    export(Decoder(), (torch.tensor([[BOS], [BOS]]), hidden, *dummy), p_dec, ["input_ids", "encoder_hidden_states", *past_names],
           ["logits", *present_names],
           {"input_ids": {0: "batch", 1: "seq"}, "encoder_hidden_states": {0: "batch"}, "logits": {0: "batch", 1: "seq"},
            **{k: {0: "batch", 2: "past"} for k in past_names}, **{k: {0: "batch", 2: "total"} for k in present_names}})
    # The decoder with past against the full model without cache, then a greedy ORT decode.
    ids = torch.tensor([[BOS, 5, 6, 7], [BOS, 8, 9, 10]])
    with torch.no_grad():
        full = model.decoder(input_ids=ids, encoder_hidden_states=hidden).logits.numpy()
    import onnxruntime as ort

    sess = ort.InferenceSession(p_dec, providers=["CPUExecutionProvider"])
    empty = {k: np.zeros((2, heads, 0, head_dim), np.float32) for k in past_names}
    r = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input_ids": ids[:, :3].numpy(), "encoder_hidden_states": hidden.numpy(), **empty})))
    step = sess.run(None, {"input_ids": ids[:, 3:].numpy(), "encoder_hidden_states": hidden.numpy(),
                           **{p: r[q] for p, q in zip(past_names, present_names)}})[0]
    for got, want in [(r["logits"], full[:, :3]), (step, full[:, 3:])]:
        diff = float(np.abs(got - want).max())
        print(f"  decoder with past vs full: max diff {diff:.2e}")
        assert diff < 1e-4
    tokens, feed, past = [], np.array([[BOS], [BOS]], np.int64), empty
    for _ in range(8):
        r = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input_ids": feed, "encoder_hidden_states": hidden.numpy(), **past})))
        logits = r["logits"][:, -1]
        logits[:, EOS] = -np.inf  # never ends: the Rust test compares the full 8 steps
        nxt = logits.argmax(-1)
        tokens.append(nxt)
        feed = nxt[:, None].astype(np.int64)
        past = {p: r[q] for p, q in zip(past_names, present_names)}
    save_golden(out_dir, "greedy", {"pixel_values": x}, {"tokens": np.stack(tokens, 1).astype(np.int64)}, 0.0)
    write_spec(out_dir, {
        "id": "tiny-captioner", "role": "captioner", "source": "random weights, transformers VisionEncoderDecoderModel (ViT + GPT-2)",
        "licence": "n/a",
        "graphs": [graph_spec(p_enc, "encoder.onnx"), graph_spec(p_dec, "decoder.onnx")],
        "seq2seq": {
            "encoder": "encoder.onnx", "encoder_input": "pixel_values", "encoder_outputs": ["encoder_hidden_states"],
            "decoder": "decoder.onnx", "decoder_input_ids": "input_ids", "logits": "logits",
            "past_inputs": past_names, "present_outputs": present_names, "num_heads": heads, "head_dim": head_dim,
            "vocab_size": vocab, "tokenizer": "tokenizer.json", "start_ids": [BOS], "eos_id": EOS, "pad_id": PAD,
            "max_new_tokens": 16,
            "image": {"file": "encoder.onnx", "input": "pixel_values", "size": 32, "mean": [127.5] * 3, "std": [127.5] * 3,
                      "embedding": "encoder_hidden_states", "dim": 32},
        },
    })


def main():
    model_id, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(0)
    {"tiny-clip": export_clip, "tiny-clap": export_clap, "tiny-captioner": export_captioner}[model_id](out_dir)
    print(f"exported {model_id} to {out_dir}")


if __name__ == "__main__":
    main()
