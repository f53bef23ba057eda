#!/usr/bin/env python3
"""Export a trained PyTorch model for Hackarena.

Writes MODEL.onnx (torch.onnx.export, opset 17, a dynamic batch axis) and
preprocess.json beside it: what `hackctl pack` needs to make the plugin the
judge runs. Standard library, numpy and torch only.

As a library:

    import hackarena_export as hx
    hx.export(model, "out/model.onnx", example=torch.zeros(1, 1, 28, 28),
              preprocess=hx.image_preprocess(scale=1 / 255))

From the command line, for a model saved with torch.jit.save (or
torch.save of the whole module, with --import naming the module that
defines its class):

    python3 hackarena_export.py model.pt --input-shape 1,28,28 \\
        --image-scale 0.00392156862745098 -o out/model.onnx

The readers and encoders below (load_mnist_*, words, build_vocabulary,
encode_texts, fit_table, encode_table) turn the challenge's downloaded
files into tensors exactly as the packed plugin will turn the judge's
batches into the model's inputs, so train with them.
"""

import argparse
import collections
import csv
import gzip
import importlib
import json
import math
import os
import struct
import sys
import unicodedata

import numpy as np
import torch

OPSET = 17


# --- exporting -----------------------------------------------------------


def export(model, path, example, preprocess=None, opset=OPSET):
    """Export model (in eval mode) to path with a dynamic batch axis, and
    write preprocess (a dict; None writes none) to preprocess.json beside it.
    example is one batch of inputs: float32 images or table rows, int64
    token ids."""
    model.eval()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            model,
            (example,),
            path,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
        )
    prep_path = os.path.join(directory, "preprocess.json")
    if preprocess is not None:
        with open(prep_path, "w") as f:
            json.dump(preprocess, f, indent=1)
    return path


def image_preprocess(scale=1.0, offset=0.0, task="classification"):
    """Pixels (0..255) become pixel*scale + offset: 1/255 for a model
    trained on [0, 1], or (1/255)/std and -mean/std for a normalised one."""
    return {"task": task, "image": {"scale": float(scale), "offset": float(offset)}}


def text_preprocess(vocabulary, length, padding="post", truncating="pre", task="classification", threshold=None):
    """Texts become length token ids: 0 pads, 1 is a word outside the
    vocabulary, vocabulary[i] is i + 2. threshold: for a model with one
    output, class 1 above it (0.5 for a sigmoid, 0 for a logit)."""
    prep = {
        "task": task,
        "text": {
            "vocabulary": list(vocabulary),
            "first_id": 2,
            "pad_id": 0,
            "unknown_id": 1,
            "length": int(length),
            "padding": padding,
            "truncating": truncating,
        },
    }
    if threshold is not None:
        prep["threshold"] = float(threshold)
    return prep


def table_preprocess(features, task="regression", output=None):
    """features from fit_table; output maps a regression output o to
    o*scale + offset, then exp if "exp" (a model trained on log prices)."""
    prep = {"task": task, "table": {"features": features}}
    if output is not None:
        prep["output"] = output
    return prep


# --- MNIST ---------------------------------------------------------------


def load_mnist_images(path):
    """An IDX image file (gzip) as uint8 [n, rows, cols]."""
    with gzip.open(path, "rb") as f:
        magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
        if magic != 2051:
            raise ValueError("%s is not an IDX image file" % path)
        return np.frombuffer(f.read(n * rows * cols), dtype=np.uint8).reshape(n, rows, cols)


def load_mnist_labels(path):
    """An IDX label file (gzip) as int64 [n]."""
    with gzip.open(path, "rb") as f:
        magic, n = struct.unpack(">II", f.read(8))
        if magic != 2049:
            raise ValueError("%s is not an IDX label file" % path)
        return np.frombuffer(f.read(n), dtype=np.uint8).astype(np.int64)


# --- texts ---------------------------------------------------------------


def words(text):
    """A text's words as the packed plugin splits them: lowercase, "<br />"
    is a space, a word is a run of letters, digits and apostrophes."""
    text = text.lower().replace("<br />", " ")
    out, cur = [], []
    for ch in text:
        if ch.isalpha() or ch == "'" or unicodedata.category(ch) == "Nd":
            cur.append(ch)
        elif cur:
            out.append("".join(cur))
            cur = []
    if cur:
        out.append("".join(cur))
    return out


def build_vocabulary(texts, size):
    """The size most frequent words, most frequent first (ties by word)."""
    counts = collections.Counter()
    for t in texts:
        counts.update(words(t))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [w for w, _ in ranked[:size]]


def encode_texts(texts, vocabulary, length, padding="post", truncating="pre"):
    """Token ids int64 [n, length], as text_preprocess describes them."""
    ids = {w: i + 2 for i, w in enumerate(vocabulary)}
    out = np.zeros((len(texts), length), dtype=np.int64)
    for r, t in enumerate(texts):
        ws = words(t)
        if len(ws) > length:
            ws = ws[:length] if truncating == "post" else ws[len(ws) - length:]
        seq = [ids.get(w, 1) for w in ws]
        start = length - len(seq) if padding == "pre" else 0
        out[r, start:start + len(seq)] = seq
    return out


# --- tables --------------------------------------------------------------


def read_csv(path):
    """A CSV file (plain or gzip) as {column: [strings]}."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    return {name: [row[i] if i < len(row) else "" for row in body] for i, name in enumerate(header)}


def _number(s):
    try:
        v = float(s)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def fit_table(columns, numeric, categorical, min_count=1):
    """Features for table_preprocess: each numeric column standardised by
    its mean and standard deviation, each categorical one one-hot over the
    values seen at least min_count times."""
    features = []
    for name in numeric:
        vals = [v for v in (_number(s) for s in columns[name]) if v is not None]
        mean = sum(vals) / len(vals) if vals else 0.0
        var = sum((v - mean) ** 2 for v in vals) / len(vals) if vals else 0.0
        std = math.sqrt(var) or 1.0
        features.append({"column": name, "mean": mean, "std": std})
    for name in categorical:
        counts = collections.Counter(columns[name])
        cats = sorted(c for c, k in counts.items() if k >= min_count)
        features.append({"column": name, "categories": cats})
    return features


def encode_table(columns, features):
    """float32 [n, width]: the rows as the packed plugin encodes them."""
    n = len(next(iter(columns.values())))
    width = sum(len(f["categories"]) if "categories" in f else 1 for f in features)
    out = np.zeros((n, width), dtype=np.float32)
    off = 0
    for f in features:
        col = columns[f["column"]]
        if "categories" in f:
            index = {c: j for j, c in enumerate(f["categories"])}
            for r, v in enumerate(col):
                if v in index:
                    out[r, off + index[v]] = 1
            off += len(f["categories"])
            continue
        std = f.get("std") or 1.0
        for r, s in enumerate(col):
            v = _number(s)
            if v is not None:
                out[r, off] = (v - f.get("mean", 0.0)) / std
        off += 1
    return out


# --- command line --------------------------------------------------------


def _load_model(path, module):
    if module:
        sys.path.insert(0, os.getcwd())
        importlib.import_module(module)
    try:
        return torch.jit.load(path)
    except Exception:
        return torch.load(path, weights_only=False) if "weights_only" in torch.load.__code__.co_varnames else torch.load(path)


def main(argv=None):
    p = argparse.ArgumentParser(description="Export a PyTorch model to ONNX and preprocess.json for hackctl pack.")
    p.add_argument("model", help="a model saved with torch.jit.save, or torch.save of the whole module")
    p.add_argument("--import", dest="module", help="the module that defines the model's class (for torch.save)")
    p.add_argument("--input-shape", required=True, help="one example's shape, e.g. 1,28,28 or 784 or 200")
    p.add_argument("--ids", action="store_true", help="the input is token ids (int64), not floats")
    p.add_argument("--image-scale", type=float, help="pixels become pixel*scale + offset (e.g. 1/255)")
    p.add_argument("--image-offset", type=float, default=0.0)
    p.add_argument("--preprocess", help="a preprocess.json to copy beside the model instead")
    p.add_argument("-o", "--output", default="model.onnx")
    args = p.parse_args(argv)
    shape = [1] + [int(d) for d in args.input_shape.split(",")]
    example = torch.zeros(shape, dtype=torch.int64 if args.ids else torch.float32)
    prep = None
    if args.preprocess:
        with open(args.preprocess) as f:
            prep = json.load(f)
    elif args.image_scale is not None:
        prep = image_preprocess(args.image_scale, args.image_offset)
    export(_load_model(args.model, args.module), args.output, example, prep)
    print("wrote %s%s; now: hackctl pack %s" % (
        args.output, " and preprocess.json" if prep is not None else "", args.output))


if __name__ == "__main__":
    main()
