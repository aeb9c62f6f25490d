#!/usr/bin/env python3
"""What context modelling of the indices could save: bits per index under several models.

Issue 29 asks for indices coded with probabilities conditioned on what the decoder already
knows (the level, the same cell's earlier indices, the neighbours), through tables that ship
with the model. Before building a format for it, this measures what such models would spend
on a development set, against the adaptive model payload coder 1 uses (docs/FORMAT.md).

    rvq export -o model.safetensors
    python scripts/context_entropy.py model.safetensors photos/train photos/dev

Every image of both folders is encoded greedily at every level with bench/torch_reference.py's
copy of the network (the indices rvq's greedy search picks, up to near-ties); the training
folder only fits the shipped tables. Each model codes the development set's indices as one
block (as `rvq encode` of the folder does: image by image, level-major, cells row-major) and
the script prints its ideal code length in bits per index (no range-coder overhead).
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


def images(folder):
    out = []
    for p in sorted(glob.glob(os.path.join(folder, "*.png"))):
        a = np.asarray(Image.open(p).convert("RGB"))
        h, w = a.shape[0] // 8 * 8, a.shape[1] // 8 * 8
        out.append(torch.tensor(a[:h, :w].copy()).permute(2, 0, 1)[None].float() / 255)
    return out


def indices(net, folder, depth):
    with torch.inference_mode():
        return [net.quantize(net.encode(x), depth)[0].numpy() for x in images(folder)]


def coder1(grids, k):
    """Payload coder 1's model: high part in context level, low bits in (level, high part);
    counts start at 1, +4 per symbol, halved (rounding up) past 4,096."""
    bits_low = (k - 1).bit_length() // 2
    n_high = -(-k // (1 << bits_low))
    levels = grids[0].shape[0]
    high = np.ones((levels, n_high))
    low = np.ones((levels, n_high, 1 << bits_low))
    bits, n = 0.0, 0
    for g in grids:
        for level in range(levels):
            for v in g[level].ravel():
                h, lo = v >> bits_low, v & ((1 << bits_low) - 1)
                for row, s in ((high[level], h), (low[level, h], lo)):
                    bits -= np.log2(row[s] / row.sum())
                    row[s] += 4
                    if row.sum() > 4096:
                        row[:] = np.ceil(row / 2)
                n += 1
    return bits / n


def adaptive(grids, k, context=None, prior=None, halve=4096):
    """One adaptive model over all k entries per (level, context): counts start at 1 (plus
    `prior`'s counts), +4 per symbol, halved past `halve`. `context(g, level, y, x)` is an
    integer the decoder knows before the index (None: one context per level)."""
    levels = grids[0].shape[0]
    tables = {}
    bits, n = 0.0, 0
    for g in grids:
        for level in range(levels):
            for y in range(g.shape[1]):
                for x in range(g.shape[2]):
                    key = (level, context(g, level, y, x) if context else 0)
                    row = tables.get(key)
                    if row is None:
                        row = np.ones(k) + (prior[level] if prior is not None else 0)
                        tables[key] = row
                    v = g[level, y, x]
                    bits -= np.log2(row[v] / row.sum())
                    row[v] += 4
                    if row.sum() > halve:
                        row[:] = np.maximum(row / 2, 1e-3)
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
    p.add_argument("train", help="folder of PNGs the shipped tables are fitted on")
    p.add_argument("dev", help="folder of PNGs to code")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    net, cfg, _ = torch_reference.load(a.model, torch.device("cpu"))
    depth, k = cfg["num_codebooks"], cfg["codebook_size"]
    train, dev = indices(net, a.train, depth), indices(net, a.dev, depth)
    count = sum(g.size for g in dev)
    print(f"{count} indices of {len(dev)} development images, {depth} levels, k = {k}\n")
    print("| model | bits per index |\n|---|---|")
    print(f"| payload coder 1 (adaptive, high part and low bits) | {coder1(dev, k):.3f} |")
    print(f"| adaptive over all k entries per level | {adaptive(dev, k):.3f} |")
    counts = np.full((depth, k), 0.5)
    for g in train:
        for level in range(depth):
            np.add.at(counts[level], g[level].ravel(), 1)
    static = counts / counts.sum(1, keepdims=True)
    fixed = -np.mean([np.log2(static[level, v]) for g in dev for level in range(depth)
                      for v in g[level].ravel()])
    print(f"| static per-level table fitted on the training folder | {fixed:.3f} |")
    print(f"| adaptive, never halved | {adaptive(dev, k, halve=float('inf')):.3f} |")
    for weight in (256, 4096):
        b = adaptive(dev, k, prior=static * weight, halve=float("inf"))
        print(f"| adaptive, never halved, starting from the static table × {weight} | {b:.3f} |")
    books = net.codebooks.detach().numpy()
    for c in (4, 16):
        label = np.stack([kmeans(books[level], c) for level in range(depth)])
        prev = adaptive(dev, k, context=lambda g, l, y, x: label[l - 1, g[l - 1, y, x]] if l else -1)
        left = adaptive(dev, k, context=lambda g, l, y, x: label[l, g[l, y, x - 1]] if x else -1)
        print(f"| adaptive per cluster (of {c}) of the same cell's previous index | {prev:.3f} |")
        print(f"| adaptive per cluster (of {c}) of the left neighbour's index | {left:.3f} |")


if __name__ == "__main__":
    main()
