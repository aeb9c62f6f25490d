#!/usr/bin/env python3
"""What context modelling of the indices could save: bits per index under several models.

Issue 29 asks for indices coded with probabilities conditioned on what the decoder already
knows (the level, the same cell's earlier indices, the neighbours), through tables that ship
with the model. Before building a format for it, this measures what such models would spend
on a development set, against the adaptive model payload coder 1 uses (docs/FORMAT.md).

    rvq export -o model.safetensors
    python scripts/context_entropy.py model.safetensors photos/train photos/dev

    python scripts/context_entropy.py model.safetensors \
        ../shared/data/cifar-10-batches-bin/data_batch_1.bin ../shared/data/cifar-10-batches-bin/test_batch.bin

Every image of both sets (a folder of PNGs, each side cut to a multiple of 8; or the first
--limit images of a CIFAR-10 batch file, ten times as many for the training file, at most
the 10,000 a batch file holds) is encoded greedily at every level with
bench/torch_reference.py's copy of the network (the indices rvq's greedy search picks, up to
near-ties); the training set only fits the shipped tables.
Each model codes the second set's indices in blocks of 64 images, image by image, level-major,
cells row-major, as rvq's blocks are coded, and the script prints its ideal code length in
bits per index (no range-coder overhead, and no choice of packing where that is shorter, as
rvq makes per block). Every model but the static table is payload coder 1's with one change.
Needs torch, safetensors, numpy and pillow.
"""

import argparse
import glob
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
import torch_reference  # noqa: E402


def images(source, limit):
    """A folder's PNGs (each side cut to a multiple of 8), or the first `limit` images of a
    CIFAR-10 binary batch file."""
    if source.endswith(".bin"):
        raw = np.fromfile(source, np.uint8).reshape(-1, 3073)[:limit, 1:]
        return [torch.tensor(raw.reshape(-1, 3, 32, 32), dtype=torch.float32) / 255]
    out = []
    for p in sorted(glob.glob(os.path.join(source, "*.png"))):
        a = np.asarray(Image.open(p).convert("RGB"))
        h, w = a.shape[0] // 8 * 8, a.shape[1] // 8 * 8
        out.append(torch.tensor(a[:h, :w].copy()).permute(2, 0, 1)[None].float() / 255)
    return out


def indices(net, source, depth, limit):
    """Each image's indices, [depth, grid rows, grid columns]."""
    grids = []
    with torch.inference_mode():
        for x in images(source, limit):
            grids.extend(net.quantize(net.encode(x), depth).numpy())
    return grids


def code(grids, k, context=None, prior=None):
    """Ideal bits per index under payload coder 1's model (docs/FORMAT.md): the high part
    v >> l in context `level`, the low bits in context (level, high part); counts start at 1,
    +4 per symbol, halved rounding up past 4,096; the model restarts every 64 images, as a
    block does. `context(g, level, y, x)` adds an integer the decoder knows before the index
    to both contexts; `prior[level]` (probabilities over the k entries, times a weight) is
    added to the starting counts, as tables shipped with the model would be."""
    bits_low = (k - 1).bit_length() // 2
    n_low = 1 << bits_low
    n_high = -(-k // n_low)
    start_high = start_low = None
    if prior is not None:
        table = np.zeros((len(prior), n_high * n_low))
        table[:, :k] = prior
        table = table.reshape(len(prior), n_high, n_low)
        start_high = table.sum(2)
        # Each low-bits context starts from the table's odds within its high part, at the
        # same weight.
        weight = table.sum((1, 2))[:, None, None]
        start_low = table / np.maximum(table.sum(2, keepdims=True), 1e-12) * weight
    bits, n = 0.0, 0
    for b0 in range(0, len(grids), 64):
        tables = {}

        def row(key, size, start):
            if key not in tables:
                tables[key] = np.ones(size) + (start if start is not None else 0)
            return tables[key]

        for g in grids[b0 : b0 + 64]:
            for level in range(g.shape[0]):
                for y in range(g.shape[1]):
                    for x in range(g.shape[2]):
                        c = context(g, level, y, x) if context else 0
                        v = g[level, y, x]
                        h, lo = v >> bits_low, v & (n_low - 1)
                        hp = start_high[level] if prior is not None else None
                        lp = start_low[level, h] if prior is not None else None
                        for counts, s in (
                            (row((level, c), n_high, hp), h),
                            (row((level, c, h), n_low, lp), lo),
                        ):
                            bits -= np.log2(counts[s] / counts.sum())
                            counts[s] += 4
                            if counts.sum() > 4096:
                                counts[:] = np.ceil(counts / 2)
                        n += 1
    return bits / n


def kmeans(x, c, iterations=20, seed=0):
    rng = np.random.default_rng(seed)
    centres = x[rng.choice(len(x), c, replace=False)]
    for _ in range(iterations):
        label = ((x[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        for j in range(c):
            if (label == j).any():
                centres[j] = x[label == j].mean(0)
    return label


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="weights from `rvq export`")
    p.add_argument("train", help="PNG folder or CIFAR-10 .bin the shipped tables are fitted on")
    p.add_argument("dev", help="PNG folder or CIFAR-10 .bin to code")
    p.add_argument("--limit", type=int, default=1000, help="images of a .bin (default 1000)")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    net, cfg, _ = torch_reference.load(a.model, torch.device("cpu"))
    depth, k = cfg["num_codebooks"], cfg["codebook_size"]
    train = indices(net, a.train, depth, 10 * a.limit)
    dev = indices(net, a.dev, depth, a.limit)
    count = sum(g.size for g in dev)
    print(f"{count} indices of {len(dev)} images to code (blocks of 64 images), {depth} levels,"
          f" k = {k}; tables fitted on {len(train)} images\n")
    print("| model of each index | bits an index |\n|---|---|")
    print(f"| payload coder 1 (shipped) | {code(dev, k):.3f} |")
    counts = np.full((depth, k), 0.5)
    for g in train:
        for level in range(depth):
            np.add.at(counts[level], g[level].ravel(), 1)
    static = counts / counts.sum(1, keepdims=True)
    fixed = -np.mean([np.log2(static[level, v]) for g in dev for level in range(depth)
                      for v in g[level].ravel()])
    print(f"| a static table per level, fitted on the training images | {fixed:.3f} |")
    for weight in (256, 1024, 4096):
        print(f"| coder 1 starting from the static tables, weight {weight} |"
              f" {code(dev, k, prior=static * weight):.3f} |")
    books = net.codebooks.detach().numpy()
    for c in (4, 16):
        label = np.stack([kmeans(books[level], c) for level in range(depth)])
        prev = code(dev, k, context=lambda g, l, y, x: label[l - 1, g[l - 1, y, x]] if l else -1)
        left = code(dev, k, context=lambda g, l, y, x: label[l, g[l, y, x - 1]] if x else -1)
        print(f"| coder 1 per cluster (of {c}) of the same cell's previous-level index | {prev:.3f} |")
        print(f"| coder 1 per cluster (of {c}) of the left neighbour's index | {left:.3f} |")


if __name__ == "__main__":
    main()
