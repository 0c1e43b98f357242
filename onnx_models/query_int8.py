"""An int8 variant of a BERT-style text encoder for short query texts (medley's search path).

Every MatMul with a weight initializer becomes an integer MatMul (ONNX MatMulInteger, which
ONNX Runtime runs on VNNI/AMX int8 kernels): weights int8 per output column, activations
quantised per token (one scale per row, computed at run time). Per-token scales keep a text's
vector independent of the other texts in its batch, which per-tensor dynamic quantisation did
not (medley measured a 0.978 minimum cosine and batch-mate dependence with it). Two more choices,
each measured on MiniLM (held-out texts, cosine to the float graph):

- Inputs that come from a LayerNormalization are smoothed first (SmoothQuant, alpha 0.7): their
  outlier channels are scaled down and the weights' rows up by the same factor, so the per-token
  scale is not set by a few channels. min 0.9972 -> 0.9978.
- Inputs that come from a GELU are quantised asymmetrically over [GELU's minimum, row max]: 255
  levels on the side where the values are instead of 127. min 0.9978 -> 0.9986.

The element-wise work the quantisation adds is a few ops per MatMul; ONNX Runtime fuses the
int32 -> float cast and the column scale into MatMulIntegerToFloat.
"""

import numpy as np

# GELU(x) = x * Phi(x) is never below this (its minimum, -0.16997, at x = -0.7518).
GELU_MIN = -0.1700
SMOOTH_ALPHA = 0.7


def _producers(graph):
    return {o: n for n in graph.node for o in n.output}


def _after_gelu(name, producers, depth=4):
    """Whether tensor `name` is a GELU's output (an Erf within the last few ops, or a Gelu op)."""
    node = producers.get(name)
    if node is None or depth == 0:
        return False
    if node.op_type in ("Erf", "Gelu", "BiasGelu"):
        return True
    return any(_after_gelu(i, producers, depth - 1) for i in node.input)


def activation_maxima(path, inputs, feeds):
    """Per-channel |max| of each tensor in `inputs` over the real (unmasked) tokens of `feeds`."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    probe = onnx.load(path)
    for name in inputs:
        probe.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
    maxima = {}
    for feed in feeds:
        real = feed["attention_mask"].astype(bool)
        for name, value in zip(inputs, sess.run(inputs, feed)):
            m = np.abs(value[real]).max(0)
            maxima[name] = np.maximum(maxima[name], m) if name in maxima else m
    return maxima


def quantize(path, out_path, calibration_feeds):
    """Write the int8 query variant of the graph at `path` to `out_path`; returns how many
    MatMuls it turned into integer ones."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(path)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = _producers(graph)
    by_input = {}
    for n in graph.node:
        if n.op_type == "MatMul" and n.input[1] in inits and numpy_helper.to_array(inits[n.input[1]]).ndim == 2:
            by_input.setdefault(n.input[0], []).append(n)
    maxima = activation_maxima(path, list(by_input), calibration_feeds)

    new_inits, before, replace = [], {}, {}
    counter = [0]

    def const(value, dtype, tag):
        counter[0] += 1
        name = f"q{counter[0]}_{tag}"
        new_inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def tensor(tag):
        counter[0] += 1
        return f"q{counter[0]}_{tag}"

    for x, nodes in by_input.items():
        weights = [numpy_helper.to_array(inits[n.input[1]]).astype(np.float64) for n in nodes]
        smooth = np.ones(weights[0].shape[0])
        ops = []
        if producers.get(x) is not None and producers[x].op_type == "LayerNormalization":
            w_max = np.max([np.abs(w).max(1) for w in weights], 0)
            smooth = np.maximum(maxima[x], 1e-5) ** SMOOTH_ALPHA / np.maximum(w_max, 1e-5) ** (1 - SMOOTH_ALPHA)
            xs = tensor("smoothed")
            ops.append(helper.make_node("Mul", [x, const(1 / smooth, np.float32, "unsmooth")], [xs]))
            x_in = xs
        else:
            x_in = x
        row_max, span, scale, to_levels, shifted, q = (tensor(t) for t in ["rowmax", "span", "scale", "levels", "shifted", "u8"])
        asymmetric = _after_gelu(x, producers)
        if asymmetric:
            # Levels 0..255 over [GELU_MIN, row max]; the offset goes to the bias below.
            low = const(GELU_MIN, np.float32, "low")
            lifted = tensor("lifted")
            ops += [helper.make_node("ReduceMax", [x_in], [row_max], axes=[-1], keepdims=1),
                    helper.make_node("Sub", [row_max, low], [span]),
                    helper.make_node("Sub", [x_in, low], [lifted])]
            levels, zero_point, source = 255.0, const(0, np.uint8, "zp"), lifted
        else:
            # Levels -127..127 around 128: symmetric, with the uint8 x int8 kernels.
            magnitude = tensor("abs")
            ops += [helper.make_node("Abs", [x_in], [magnitude]),
                    helper.make_node("ReduceMax", [magnitude], [span], axes=[-1], keepdims=1)]
            levels, zero_point, source = 127.0, const(128, np.uint8, "zp"), x_in
        span_safe, levelled = tensor("span_safe"), tensor("levelled")
        ops += [helper.make_node("Max", [span, const(1e-8, np.float32, "eps")], [span_safe]),
                helper.make_node("Mul", [span_safe, const(1 / levels, np.float32, "per_level")], [scale]),
                helper.make_node("Div", [const(levels, np.float32, "levels"), span_safe], [to_levels]),
                helper.make_node("Mul", [source, to_levels], [levelled]),
                # Cast truncates; values are >= 0 here, so + 0.5 rounds to nearest.
                helper.make_node("Add", [levelled, const(0.5 if asymmetric else 128.5, np.float32, "round")], [shifted]),
                helper.make_node("Cast", [shifted], [q], to=TensorProto.UINT8)]
        before[nodes[0].output[0]] = ops
        for n, w in zip(nodes, weights):
            w = w * smooth[:, None]
            w_scale = np.maximum(np.abs(w).max(0), 1e-12) / 127
            w_q = np.clip(np.round(w / w_scale), -127, 127).astype(np.int8)
            acc, as_float, row_scaled = tensor("acc"), tensor("float"), tensor("rows")
            post = [helper.make_node("MatMulInteger", [q, const(w_q, np.int8, "w"), zero_point], [acc]),
                    helper.make_node("Cast", [acc], [as_float], to=TensorProto.FLOAT),
                    helper.make_node("Mul", [as_float, scale], [row_scaled])]
            if asymmetric:
                scaled = tensor("cols")
                offset = GELU_MIN * (w_q.astype(np.float64) * w_scale).sum(0)
                post += [helper.make_node("Mul", [row_scaled, const(w_scale, np.float32, "w_scale")], [scaled]),
                         helper.make_node("Add", [scaled, const(offset, np.float32, "offset")], [n.output[0]])]
            else:
                post.append(helper.make_node("Mul", [row_scaled, const(w_scale, np.float32, "w_scale")], [n.output[0]]))
            replace[n.output[0]] = post

    nodes = []
    for n in graph.node:
        nodes += before.get(n.output[0], [])
        nodes += replace.get(n.output[0], [n])
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    kept = [i for i in list(graph.initializer) + new_inits if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.checker.check_model(model)
    onnx.save(model, out_path)
    return len(replace)


def cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
