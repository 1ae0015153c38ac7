#!/usr/bin/env python3
"""Independent NumPy reference of the CLIP forward pass (Hugging Face CLIPModel semantics), in float64.

Reads the weights of a synthesized (or any glimpse-layout) fp32 model folder by initializer name, runs
the vision and/or text tower on inputs given as raw little-endian files, and prints JSON:
{"image_embeds": [[...]], "text_embeds": [[...]], "reader": "..."}. Embeddings are not normalized.

Weights follow glimpse's synthesized layout: linear weights are [in, out] (y = x @ W + b), the patch
embedding is a Conv weight [hidden, 3, patch, patch]. Run it with Debian's /usr/bin/python3, which has
NumPy (python3-numpy) and ONNX 1.12 (python3-onnx); without ONNX it falls back to a minimal protobuf
reader for initializers (the only part of the file it needs).

  /usr/bin/python3 scripts/reference/clip_forward.py --model DIR \
      --pixels px.f32 --images 2 --ids ids.i64 --mask mask.i64 --texts 2 --seq 7
"""
import argparse
import json
import sys

try:
    import numpy as np
except ImportError:  # a clear message rather than a traceback: the test shows it
    sys.stderr.write(
        "clip_forward.py needs NumPy for %s: install it (apt-get install python3-numpy)\n" % sys.executable
    )
    sys.exit(3)

# TensorProto.DataType → NumPy dtype (the types synthesized fp32 files use).
DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64, 10: np.float16, 11: np.float64}


def _varint(buf, pos):
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return result, pos


def _fields(buf, start, end):
    """Yields (field number, wire type, value) of one protobuf message; LEN values as (start, end)."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = (pos, pos + length), pos + length
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError("unsupported wire type %d" % wire)
        yield field, wire, value


def _initializers_builtin(path):
    buf = memoryview(open(path, "rb").read())
    out = {}
    for field, _, value in _fields(buf, 0, len(buf)):
        if field != 7:  # ModelProto.graph
            continue
        for gfield, _, gvalue in _fields(buf, *value):
            if gfield != 5:  # GraphProto.initializer
                continue
            dims, dtype, name, raw = [], None, None, None
            for tfield, _, tvalue in _fields(buf, *gvalue):
                if tfield == 1:
                    dims.append(tvalue)
                elif tfield == 2:
                    dtype = tvalue
                elif tfield == 8:
                    name = bytes(buf[tvalue[0] : tvalue[1]]).decode()
                elif tfield == 9:
                    raw = buf[tvalue[0] : tvalue[1]]
            out[name] = np.frombuffer(raw, dtype=DTYPES[dtype]).reshape(dims)
    return out


def load_initializers(path):
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        return _initializers_builtin(path), "builtin protobuf reader"
    model = onnx.load(path)
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}, "onnx " + onnx.__version__


class Weights:
    def __init__(self, tensors):
        self.t = tensors

    def __call__(self, name):
        return self.t[name].astype(np.float64)


def layer_norm(x, w, prefix, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w(prefix + ".weight") + w(prefix + ".bias")


def linear(x, w, prefix, bias=True):
    y = x @ w(prefix + ".weight")
    return y + w(prefix + ".bias") if bias else y


def softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def encoder_layer(x, w, prefix, heads, eps, allowed):
    """Pre-LN CLIPEncoderLayer; `allowed` is a boolean [B, 1, S, S] attention pattern or None."""
    b, s, h = x.shape
    d = h // heads
    n = layer_norm(x, w, prefix + ".layer_norm1", eps)

    def split(name):
        return linear(n, w, prefix + ".self_attn." + name).reshape(b, s, heads, d).transpose(0, 2, 1, 3)

    q = split("q_proj") * d**-0.5
    k = split("k_proj")
    v = split("v_proj")
    scores = q @ k.transpose(0, 1, 3, 2)
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    ctx = (softmax(scores) @ v).transpose(0, 2, 1, 3).reshape(b, s, h)
    x = x + linear(ctx, w, prefix + ".self_attn.out_proj")
    n = layer_norm(x, w, prefix + ".layer_norm2", eps)
    f = linear(n, w, prefix + ".mlp.fc1")
    f = f / (1.0 + np.exp(-1.702 * f))  # quick_gelu: x * sigmoid(1.702 x)
    return x + linear(f, w, prefix + ".mlp.fc2")


def vision_forward(w, cfg, pixels):
    vc = cfg["vision_config"]
    eps, heads, p = vc["layer_norm_eps"], vc["num_attention_heads"], vc["patch_size"]
    b, c, size, _ = pixels.shape
    g = size // p
    conv = w("vision_model.embeddings.patch_embedding.weight")  # [hidden, c, p, p]
    hidden = conv.shape[0]
    patches = pixels.reshape(b, c, g, p, g, p).transpose(0, 2, 4, 1, 3, 5).reshape(b, g * g, c * p * p)
    emb = patches @ conv.reshape(hidden, -1).T
    cls = np.broadcast_to(w("vision_model.embeddings.class_embedding"), (b, 1, hidden))
    x = np.concatenate([cls, emb], axis=1) + w("vision_model.embeddings.position_embedding.weight")
    x = layer_norm(x, w, "vision_model.pre_layrnorm", eps)
    for i in range(vc["num_hidden_layers"]):
        x = encoder_layer(x, w, "vision_model.encoder.layers.%d" % i, heads, eps, None)
    pooled = layer_norm(x[:, 0, :], w, "vision_model.post_layernorm", eps)
    return linear(pooled, w, "visual_projection", bias=False)


def text_forward(w, cfg, ids, mask):
    tc = cfg["text_config"]
    eps, heads = tc["layer_norm_eps"], tc["num_attention_heads"]
    b, s = ids.shape
    x = w("text_model.embeddings.token_embedding.weight")[ids] + w("text_model.embeddings.position_embedding.weight")[:s]
    causal = np.tril(np.ones((s, s), dtype=bool))
    allowed = causal[None, None, :, :] & (mask != 0)[:, None, None, :]
    for i in range(tc["num_hidden_layers"]):
        x = encoder_layer(x, w, "text_model.encoder.layers.%d" % i, heads, eps, allowed)
    x = layer_norm(x, w, "text_model.final_layer_norm", eps)
    pooled = x[np.arange(b), ids.argmax(axis=-1)]  # first end token (eos is the largest id)
    return linear(pooled, w, "text_projection", bias=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--pixels", help="float32 [images, 3, size, size], little-endian")
    ap.add_argument("--images", type=int, default=0)
    ap.add_argument("--ids", help="int64 [texts, seq]")
    ap.add_argument("--mask", help="int64 [texts, seq] attention mask")
    ap.add_argument("--texts", type=int, default=0)
    ap.add_argument("--seq", type=int, default=0)
    args = ap.parse_args()
    cfg = json.load(open(args.model + "/config.json"))
    result = {}
    readers = []
    if args.pixels:
        tensors, reader = load_initializers(args.model + "/onnx/vision_model.onnx")
        readers.append(reader)
        size = cfg["vision_config"]["image_size"]
        pixels = np.fromfile(args.pixels, dtype="<f4").astype(np.float64).reshape(args.images, 3, size, size)
        result["image_embeds"] = vision_forward(Weights(tensors), cfg, pixels).tolist()
    if args.ids:
        tensors, reader = load_initializers(args.model + "/onnx/text_model.onnx")
        readers.append(reader)
        ids = np.fromfile(args.ids, dtype="<i8").reshape(args.texts, args.seq)
        mask = np.fromfile(args.mask, dtype="<i8").reshape(args.texts, args.seq)
        result["text_embeds"] = text_forward(Weights(tensors), cfg, ids, mask).tolist()
    result["reader"] = ", ".join(sorted(set(readers)))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
