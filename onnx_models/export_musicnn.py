"""Export the musicnn music taggers (MTT and MSD) from the musicnn==0.1.0 sdist's TF1
checkpoints, with the log-mel front end built into the same graph, via tf2onnx.

Usage: python export_musicnn.py musicnn-mtt|musicnn-msd OUT_DIR

Graph: waveform [B, 47616] (16 kHz mono, 2.98 s) -> STFT (512/256, periodic Hann, reflect
padding, as the librosa of musicnn's time) as a strided convolution -> power -> 96 Slaney mels
-> log10(1 + 1e4 * P) -> [B, 187, 96] -> musicnn -> tags [B, 50] (sigmoid), penultimate
[B, 200], mean_pool/max_pool [B, 753].
Checks: onnxruntime on the waveform against TensorFlow fed an independent NumPy (np.fft)
log-mel of the same waveform.
"""

import os
import sys

import numpy as np
import tensorflow as tf

from medley_common import check_onnx, graph_spec, int8_variant, sample_windows, save_golden, write_spec

RATE, N_FFT, HOP, N_MELS = 16000, 512, 256, 96
FRAMES = 187
WINDOW = (FRAMES - 1) * HOP  # 47616 samples


# What each tag means, in words a sentence encoder knows: the label bridge embeds these instead
# of the bare tag ("female", "00s", "no vocal"). ` | ` separates phrasings that are embedded
# one by one and averaged. Written by hand (the tags are Last.fm / MagnaTagATune words, not
# WordNet senses); measured by measure_label_texts.py.
TAG_TEXTS = {
    "musicnn-mtt": {
        "guitar": "guitar music | a guitar playing",
        "classical": "classical music | an orchestra playing classical music",
        "slow": "slow music | a slow, calm tempo",
        "techno": "techno music | electronic dance music with a repetitive beat",
        "strings": "a string section | violins, cellos and other string instruments",
        "drums": "drums | drumming and percussion",
        "electronic": "electronic music | synthesizers and drum machines",
        "rock": "rock music | electric guitars, bass and drums",
        "fast": "fast music | a fast, energetic tempo",
        "piano": "piano music | a piano playing",
        "ambient": "ambient music | calm atmospheric background music",
        "beat": "a strong beat | rhythmic music with a beat",
        "violin": "violin music | a violin or fiddle playing",
        "vocal": "vocals | a singer singing",
        "synth": "synthesizer music | electronic synth sounds",
        "female": "a female singer | a woman singing",
        "indian": "Indian music | music from India",
        "opera": "opera | an opera singer",
        "male": "a male singer | a man singing",
        "singing": "singing | someone singing a song",
        "vocals": "vocals | a singer singing",
        "no vocals": "instrumental music | music without singing",
        "harpsichord": "harpsichord music | a harpsichord playing baroque music",
        "loud": "loud music | loud, intense music",
        "quiet": "quiet music | soft, gentle, quiet music",
        "flute": "flute music | a flute playing",
        "woman": "a woman singing | a female voice",
        "male vocal": "male vocals | a man singing",
        "no vocal": "instrumental music | music without singing",
        "pop": "pop music | a catchy pop song",
        "soft": "soft music | soft, gentle music",
        "sitar": "sitar music | a sitar playing Indian music",
        "solo": "a solo instrument | one instrument playing alone",
        "man": "a man singing | a male voice",
        "classic": "classical music | an orchestra playing classical music",
        "choir": "a choir | a choir singing together",
        "voice": "a voice | someone singing",
        "new age": "new age music | relaxing meditative music",
        "dance": "dance music | music for dancing",
        "male voice": "a male voice | a man singing",
        "female vocal": "female vocals | a woman singing",
        "beats": "beats | a drum beat",
        "harp": "harp music | a harp playing",
        "cello": "cello music | a cello playing",
        "no voice": "instrumental music | music without singing",
        "weird": "weird music | strange, experimental sounds",
        "country": "country music | country and western music with guitars",
        "metal": "heavy metal music | loud distorted guitars and drums",
        "female voice": "a female voice | a woman singing",
        "choral": "choral music | a choir singing",
    },
    "musicnn-msd": {
        "rock": "rock music | electric guitars, bass and drums",
        "pop": "pop music | a catchy pop song",
        "alternative": "alternative music | alternative rock",
        "indie": "indie music | independent rock and pop",
        "electronic": "electronic music | synthesizers and drum machines",
        "female vocalists": "a female singer | a woman singing",
        "dance": "dance music | music for dancing",
        "00s": "music from the 2000s | a song from the 2000s",
        "alternative rock": "alternative rock music | alternative rock with guitars",
        "jazz": "jazz music | jazz with saxophone, piano and swing",
        "beautiful": "beautiful music | a beautiful song",
        "metal": "heavy metal music | loud distorted guitars and drums",
        "chillout": "chillout music | relaxed, laid-back music",
        "male vocalists": "a male singer | a man singing",
        "classic rock": "classic rock music | rock from the 1960s and 1970s",
        "soul": "soul music | soulful singing with rhythm and blues",
        "indie rock": "indie rock music | an independent rock band",
        "Mellow": "mellow music | calm, gentle music",
        "electronica": "electronica | electronic music",
        "80s": "music from the 1980s | an 80s song",
        "folk": "folk music | traditional acoustic folk songs",
        "90s": "music from the 1990s | a 90s song",
        "chill": "chill music | relaxed, calm music",
        "instrumental": "instrumental music | music without singing",
        "punk": "punk rock music | fast, loud punk",
        "oldies": "oldies | old songs from the 1950s and 1960s",
        "blues": "blues music | the blues with guitar",
        "hard rock": "hard rock music | loud heavy rock",
        "ambient": "ambient music | calm atmospheric background music",
        "acoustic": "acoustic music | acoustic guitar, unplugged",
        "experimental": "experimental music | strange, unusual sounds",
        "female vocalist": "a female singer | a woman singing",
        "guitar": "guitar music | a guitar playing",
        "Hip-Hop": "hip-hop music | rap with beats",
        "70s": "music from the 1970s | a 70s song",
        "party": "party music | upbeat music for a party",
        "country": "country music | country and western music with guitars",
        "easy listening": "easy listening music | light, pleasant background music",
        "sexy": "sexy music | sensual, seductive music",
        "catchy": "catchy music | a catchy tune",
        "funk": "funk music | funky bass and groove",
        "electro": "electro music | electronic dance music",
        "heavy metal": "heavy metal music | loud distorted guitars and drums",
        "Progressive rock": "progressive rock music | long, complex rock songs",
        "60s": "music from the 1960s | a 60s song",
        "rnb": "R&B music | rhythm and blues",
        "indie pop": "indie pop music | independent pop",
        "sad": "sad music | a sad, melancholic song",
        "House": "house music | electronic dance music with a four-on-the-floor beat",
        "happy": "happy music | a happy, cheerful song",
    },
}


def slaney_mel(sr, n_fft, n_mels):
    """librosa.filters.mel(sr, n_fft, n_mels) with its defaults (Slaney scale and norm)."""
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp

    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)

    def mel_to_hz(m):
        m = np.asarray(m, dtype=np.float64)
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)

    fft_freqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    w = np.zeros((n_mels, len(fft_freqs)))
    for i in range(n_mels):
        w[i] = np.maximum(0, np.minimum(-ramps[i] / fdiff[i], ramps[i + 2] / fdiff[i + 1]))
    w *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return w.astype(np.float32)


def hann():
    n = np.arange(N_FFT)
    return 0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)


def numpy_logmel(wave):
    mel = slaney_mel(RATE, N_FFT, N_MELS).astype(np.float64)
    out = []
    for w in wave.astype(np.float64):
        x = np.pad(w, N_FFT // 2, mode="reflect")
        frames = np.stack([x[i : i + N_FFT] for i in range(0, len(x) - N_FFT + 1, HOP)])
        power = np.abs(np.fft.rfft(frames * hann(), axis=1)) ** 2
        out.append(np.log10(1.0 + 10000.0 * power @ mel.T))
    return np.stack(out).astype(np.float32)


def tf_logmel(wave):
    n = np.arange(N_FFT)
    k = np.arange(N_FFT // 2 + 1)[:, None]
    basis = np.concatenate([np.cos(2 * np.pi * k * n / N_FFT) * hann(), -np.sin(2 * np.pi * k * n / N_FFT) * hann()])
    kernel = tf.constant(basis.T[:, None, :].astype(np.float32))  # [width, in=1, out=2*257]
    x = tf.pad(wave, [[0, 0], [N_FFT // 2, N_FFT // 2]], mode="REFLECT")[:, :, None]
    spec = tf.nn.conv1d(x, kernel, stride=HOP, padding="VALID")  # [B, T, 514]
    bins = N_FFT // 2 + 1
    power = tf.square(spec[:, :, :bins]) + tf.square(spec[:, :, bins:])
    mel = tf.matmul(power, tf.constant(slaney_mel(RATE, N_FFT, N_MELS).T))  # [B, T, 96]
    return tf.math.log(1.0 + 10000.0 * mel) / np.log(10.0)


def pool_before_bn(model):
    """Rewrite each `Conv -> Relu -> BatchNormalization -> MaxPool` whose pool spans a whole
    axis (musicnn's front end: 5 filter banks, each pooled over frequency) so that the ReLU and
    batch norm run on the pooled tensor, 30-96x smaller, instead of the convolution's output.
    Exact: the batch norm is `a * x + b` per channel, so max(a * relu(z) + b) is
    a * relu(max(z)) + b where a > 0, and a * relu(-max(-z)) + b where a < 0; the convolution's
    channels with a < 0 are negated and a `Mul` by the signs after the pool undoes it. On one
    core, 8 windows: about 0.8x the time. Returns how many were rewritten."""
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    readers = {}
    for n in g.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    sole = lambda n: readers.get(n.output[0], 0) == 1
    moved = 0
    for pool in [n for n in g.node if n.op_type == "MaxPool"]:
        attrs = {a.name: a for a in pool.attribute}
        if "pads" in attrs or "dilations" in attrs or list(attrs["kernel_shape"].ints)[0] != 1:
            continue
        bn = producer.get(pool.input[0])
        relu = bn and producer.get(bn.input[0])
        conv = relu and producer.get(relu.input[0])
        if not (bn and bn.op_type == "BatchNormalization" and relu.op_type == "Relu" and conv.op_type == "Conv"
                and sole(bn) and sole(relu) and sole(conv) and len(conv.input) == 3):
            continue
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        gamma, _, _, var = (numpy_helper.to_array(inits[i]) for i in bn.input[1:5])
        sign = np.where(gamma / np.sqrt(var + eps) < 0, -1.0, 1.0).astype(np.float32)
        w, b = (numpy_helper.to_array(inits[i]) for i in conv.input[1:3])
        signed_w, signed_b, sign_name = conv.input[1] + "_signed", conv.input[2] + "_signed", pool.output[0] + "_sign"
        g.initializer.extend([numpy_helper.from_array(w * sign[:, None, None, None], signed_w),
                              numpy_helper.from_array(b * sign, signed_b),
                              numpy_helper.from_array(sign.reshape(1, -1, 1, 1), sign_name)])
        conv.input[1], conv.input[2] = signed_w, signed_b
        out, pooled, unsigned = pool.output[0], pool.output[0] + "_pooled", pool.output[0] + "_unsigned"
        pool.input[0], pool.output[0] = conv.output[0], pooled
        g.node.append(helper.make_node("Mul", [pooled, sign_name], [unsigned], name=pool.name + "_sign"))
        relu.input[0], bn.input[0], bn.output[0] = unsigned, relu.output[0], out
        moved += 1
    topological_order(g)
    return moved


def pad_pooled_convs(model, block=16):
    """Give each convolution read only by a MaxPool a multiple of `block` output channels (zero
    filters), and slice the extra channels off after the pool. ONNX Runtime's CPU convolutions
    run in a blocked layout of 16 channels; the pool takes that layout only for whole blocks,
    so musicnn's filter banks (204 and 51 channels) had each output, up to 8 x 204 x 187 x 59
    floats, converted back to plain layout before pooling: about a third of the model's time.
    Exact (the zero channels are dropped unread). On one core, 8 windows: about 0.8x the
    time. Returns how many were padded."""
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    readers = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    padded = 0
    for conv in [n for n in g.node if n.op_type == "Conv" and n.input[1] in inits]:
        w = numpy_helper.to_array(inits[conv.input[1]])
        pool = readers.get(conv.output[0], [])
        extra = -w.shape[0] % block
        if extra == 0 or len(pool) != 1 or pool[0].op_type != "MaxPool":
            continue
        for name in conv.input[1:3]:
            v = numpy_helper.to_array(inits[name])
            v = np.concatenate([v, np.zeros((extra,) + v.shape[1:], v.dtype)])
            inits[name].CopyFrom(numpy_helper.from_array(v, name))
        out = pool[0].output[0]
        pool[0].output[0] = out + "_blocks"
        bounds = [out + "_starts", out + "_ends", out + "_axes"]
        g.initializer.extend(numpy_helper.from_array(np.array(v, np.int64), b)
                             for b, v in zip(bounds, ([0], [w.shape[0]], [1])))
        g.node.append(helper.make_node("Slice", [out + "_blocks", *bounds], [out], name=out + "_slice"))
        padded += 1
    topological_order(g)
    return padded


def musicnn_int8(model_id, path, x, min_cosine=0.995):
    """Write `model.int8.onnx` beside `path` with the timbral convolutions in int8 (one input
    channel, kernels over several frames and mel bands: two thirds of the model's arithmetic),
    calibrated on the sample media's soundtracks; the rest stays float (in int8 the temporal
    convolutions ran 4-7x slower in ONNX Runtime, and the whole model lost its tags: cosine
    0.85). On one core, 8 windows: about 0.55x the float graph's time. Every held-out window
    (other stretches of the same files, and `x`) must keep `min_cosine` to the float graph's
    tags and embedding. Returns the int8 graph's outputs on `x`, or None."""
    def timbral(g):
        shapes = {i.name: tuple(i.dims) for i in g.initializer}
        return {"nodes_to_quantize": [n.name for n in g.node if n.op_type == "Conv" and len(shapes.get(n.input[1], ())) == 4
                                      and shapes[n.input[1]][1] == 1 and min(shapes[n.input[1]][2:]) > 1]}

    return int8_variant(model_id, path, "waveform", sample_windows(30, 0, WINDOW, RATE),
                        sample_windows(30, 90, WINDOW, RATE), x, ["tags", "penultimate"], min_cosine, timbral)


def topological_order(g):
    """Put the nodes in an order where each follows the producers of its inputs."""
    import onnx

    ready = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    pending, ordered = [onnx.NodeProto.FromString(n.SerializeToString()) for n in g.node], []
    while pending:
        left = []
        for n in pending:
            if all(i in ready for i in n.input):
                ordered.append(n)
                ready.update(n.output)
            else:
                left.append(n)
        if len(left) == len(pending):
            raise SystemExit("the rewritten graph has a cycle or a missing input")
        pending = left
    del g.node[:]
    g.node.extend(ordered)


def main():
    model_id, out_dir = sys.argv[1], sys.argv[2]
    name = {"musicnn-mtt": "MTT_musicnn", "musicnn-msd": "MSD_musicnn"}[model_id]
    os.makedirs(out_dir, exist_ok=True)
    tf.compat.v1.disable_eager_execution()
    import musicnn
    from musicnn import configuration as config
    from musicnn import models

    labels = config.MTT_LABELS if name.startswith("MTT") else config.MSD_LABELS
    graph = tf.Graph()
    with graph.as_default():
        wave = tf.compat.v1.placeholder(tf.float32, [None, WINDOW], name="waveform")
        spec = tf.identity(tf_logmel(wave), name="logmel")
        with tf.name_scope("model"):
            y, _t, _tp, _c1, _c2, _c3, mean_pool, max_pool, penultimate = models.define_model(spec, tf.constant(False), name, len(labels))
        outputs = {
            "tags": tf.identity(tf.nn.sigmoid(y), name="tags"),
            "penultimate": tf.identity(penultimate, name="penultimate"),
            "mean_pool": tf.identity(mean_pool, name="mean_pool"),
            "max_pool": tf.identity(max_pool, name="max_pool"),
        }
        sess = tf.compat.v1.Session(graph=graph)
        tf.compat.v1.train.Saver().restore(sess, os.path.join(os.path.dirname(musicnn.__file__), name) + "/")
        frozen = tf.compat.v1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), list(outputs))

    import tf2onnx

    path = os.path.join(out_dir, "model.onnx")
    tf2onnx.convert.from_graph_def(frozen, input_names=["waveform:0"], output_names=[f"{k}:0" for k in outputs],
                                   opset=17, output_path=path)
    import onnx

    m = onnx.load(path)  # plain names: drop tf2onnx's ":0"
    rename = {f"{k}:0": k for k in ["waveform", *outputs]}
    for v in list(m.graph.input) + list(m.graph.output):
        v.name = rename.get(v.name, v.name)
    for node in m.graph.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
        node.output[:] = [rename.get(o, o) for o in node.output]
    for v in m.graph.input:
        v.type.tensor_type.shape.dim[0].dim_param = "batch"
    print(f"  {model_id}: {pool_before_bn(m)} poolings moved before their ReLU and batch norm")
    print(f"  {model_id}: {pad_pooled_convs(m)} pooled convolutions padded to whole channel blocks")
    onnx.checker.check_model(m)
    onnx.save(m, path)

    rng = np.random.default_rng(3)
    t = np.arange(WINDOW) / RATE
    chord = sum(np.sin(2 * np.pi * f * t) for f in [220.0, 277.2, 329.6]) / 3 * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))
    clicks = (np.mod(np.arange(WINDOW), 8000) < 200) * rng.standard_normal(WINDOW) * 0.5
    x = np.stack([chord, clicks, 0.1 * rng.standard_normal(WINDOW)]).astype(np.float32)
    ref = sess.run({k: graph.get_tensor_by_name(f"{k}:0") for k in outputs}, {"logmel:0": numpy_logmel(x)})
    int8 = musicnn_int8(model_id, path, x)
    # The golden tensors are those of the graph the Rust side runs on the CPU.
    check_onnx(out_dir, "three_windows", path, {"waveform": x}, ref, 2e-3, save=int8 is None)
    graph = graph_spec(path, "model.onnx")
    if int8 is not None:
        save_golden(out_dir, "three_windows", {"waveform": x}, {k: int8[k] for k in ref}, 2e-3)
        graph["int8"] = "model.int8.onnx"
    with open(os.path.join(out_dir, "labels.txt"), "w") as f:
        f.write("\n".join(labels) + "\n")
    texts = TAG_TEXTS[model_id]
    assert list(texts) == list(labels), f"{model_id}: TAG_TEXTS must list the tags in the model's order"
    with open(os.path.join(out_dir, "label_texts.txt"), "w") as f:
        f.write("\n".join(texts.values()) + "\n")
    write_spec(out_dir, {
        "id": model_id, "role": "music_tagger",
        "source": f"PyPI musicnn==0.1.0 ({name} checkpoint)", "licence": "ISC",
        "graphs": [graph],
        "tagger": {"file": "model.onnx", "input": "waveform", "sample_rate": RATE, "window": WINDOW, "tags": "tags",
                   "labels": "labels.txt", "label_texts": "label_texts.txt", "activation": "none",
                   "embedding": "penultimate",
                   "embeddings": {"penultimate": 200, "mean_pool": 753, "max_pool": 753}},
    })
    print(f"exported {model_id} to {out_dir}")


if __name__ == "__main__":
    main()
