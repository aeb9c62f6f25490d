#!/usr/bin/env python3
"""Estimate, before any Rust: latents fitted to the decoder, per image, before quantisation.

    rvq export -o model.safetensors
    python docs/results/fit/latopt.py model.safetensors STEPS LR IMAGE.png...

Needs torch, safetensors, numpy and Pillow; the model is bench/torch_reference.py's copy.
For each image: the encoder's latent x0; greedy RVQ (g) and a beam of 4 (b) at each depth of
DEPTHS (default 1,2,4,8) of x0; then latents moved by STEPS Adam steps of size LR so that
the decoder draws them closer to the image, and the same quantisations of those:
- A: the full gradient of the unquantised decode's squared error (autodiff through the
  decoder);
- B: the same through the quantiser with a straight-through gradient, one run per depth
  (the quantiser in the loop greedy, or the beam with BEAM_LOOP=1);
- L: the gradient through the decoder's linear path alone (a cell's latent reaches its patch
  through one matrix, so no backward pass: what rvq builds), LSTEPS Adam steps of size
  ALPHA with ADAM=1 (without ADAM, Gauss-Newton steps through the path's pseudo-inverse);
  ONLY_L=1 skips A and B.
Prints PSNR per image and setting (unq: unquantised), then the mean. Same index counts
throughout: no entropy coding.
"""

import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "bench"))
from torch_reference import load  # noqa: E402

torch.set_num_threads(int(os.environ.get("THREADS", "2")))
DEPTHS = [int(d) for d in os.environ.get("DEPTHS", "1,2,4,8").split(",")]


def psnr(a, b):
    mse = ((a - b) ** 2).mean().item()
    return 10 * math.log10(1 / mse), mse


def beam(net, latents, depth, width=4):
    """Beam search: the width best partial sums per cell, the closest at `depth` dequantised."""
    b, d, h, w = latents.shape
    x = latents.permute(0, 2, 3, 1).reshape(-1, d)
    n = x.shape[0]
    res = x[:, None, :]  # [n, beams, d]
    total = torch.zeros_like(res)
    for level in range(depth):
        book = net.codebooks[level]
        k = book.shape[0]
        dist = (res * res).sum(-1, keepdim=True) - 2 * res @ book.T + (book * book).sum(1)
        flat = dist.reshape(n, -1)
        keep = min(width, flat.shape[1])
        _, idx = flat.topk(keep, dim=1, largest=False)
        parent, entry = idx // k, idx % k
        ar = torch.arange(n)[:, None]
        total = total[ar, parent] + book[entry]
        res = x[:, None, :] - total
    best = (res * res).sum(-1).argmin(1)
    q = total[torch.arange(n), best]
    return q.reshape(b, h, w, d).permute(0, 3, 1, 2)


def main():
    model, steps, lr = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    net, cfg, _ = load(model, torch.device("cpu"))
    for p in net.parameters():
        p.requires_grad_(False)
    g = cfg["grid_factor"]
    totals = {}
    for path in sys.argv[4:]:
        img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
        h, w, _ = img.shape
        t = torch.from_numpy(img).permute(2, 0, 1)[None]
        ph, pw = -h % g, -w % g
        tp = F.pad(t, (0, pw, 0, ph), mode="replicate")
        crop = lambda y: y[..., :h, :w]  # noqa: E731
        with torch.no_grad():
            x0 = net.encode(tp)
        row = {}
        with torch.no_grad():
            row["unq"] = psnr(crop(net.decode(x0)), t)[0]
            for d in DEPTHS:
                q = net.dequantize(net.quantize(x0, d))
                row[f"g{d}"] = psnr(crop(net.decode(q)), t)[0]
                row[f"b{d}"] = psnr(crop(net.decode(beam(net, x0, d))), t)[0]
        t0 = time.time()
        # Variant A: fit the unquantised latent to the decoder.
        x = x0.clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            loss = ((crop(net.decode(x)) - t) ** 2).mean()
            loss.backward()
            opt.step()
        with torch.no_grad():
            row["A.unq"] = psnr(crop(net.decode(x)), t)[0]
            for d in DEPTHS:
                q = net.dequantize(net.quantize(x, d))
                row[f"A.g{d}"] = psnr(crop(net.decode(q)), t)[0]
        ta = time.time() - t0
        # Variant L: Gauss-Newton steps through the linear path only (one decode a step).
        W = net.lin_dec.weight[:, :, 0, 0]  # [patch, d]
        P = torch.linalg.pinv(W)  # [d, patch]
        x = x0.clone()
        alpha = float(os.environ.get("ALPHA", "0.5"))
        with torch.no_grad():
            m = torch.zeros_like(x); v = torch.zeros_like(x)
            for i in range(int(os.environ.get("LSTEPS", "5"))):
                r = net.decode(x) - tp  # padded
                rp = F.pixel_unshuffle(r, g)  # [1, patch, gh, gw]
                if os.environ.get("ADAM"):
                    gr = torch.einsum("pd,bphw->bdhw", W, rp)
                    m = 0.9 * m + 0.1 * gr; v = 0.999 * v + 0.001 * gr * gr
                    mh = m / (1 - 0.9 ** (i + 1)); vh = v / (1 - 0.999 ** (i + 1))
                    x = x - alpha * mh / (vh.sqrt() + 1e-8)
                else:
                    x = x - alpha * torch.einsum("dp,bphw->bdhw", P, rp)
            row["L.unq"] = psnr(crop(net.decode(x)), t)[0]
            for d in DEPTHS:
                row[f"L.g{d}"] = psnr(crop(net.decode(net.dequantize(net.quantize(x, d)))), t)[0]
                row[f"L.b{d}"] = psnr(crop(net.decode(beam(net, x, d))), t)[0]
        if os.environ.get("ONLY_L"):
            print(os.path.basename(path), " ".join(f"{k}={v:.2f}" for k, v in row.items() if not k.startswith(("A", "B"))), flush=True)
            for k, v in row.items():
                totals.setdefault(k, []).append(v)
            continue
        # Variant B: straight through the quantiser at each depth, from x0.
        for d in DEPTHS:
            x = x0.clone().requires_grad_(True)
            opt = torch.optim.Adam([x], lr=lr)
            best = (row[f"g{d}"], None)
            bestx = None
            for _ in range(steps):
                opt.zero_grad()
                with torch.no_grad():
                    q = beam(net, x, d) if os.environ.get("BEAM_LOOP") else net.dequantize(net.quantize(x, d))
                zq = x + (q - x).detach()
                out = crop(net.decode(zq))
                loss = ((out - t) ** 2).mean()
                p = 10 * math.log10(1 / loss.item())
                if p > best[0] or bestx is None:
                    best = (max(p, best[0]), None)
                    bestx = x.detach().clone()
                loss.backward()
                opt.step()
            row[f"B.g{d}"] = best[0]
            with torch.no_grad():
                row[f"B.b{d}"] = psnr(crop(net.decode(beam(net, bestx, d))), t)[0]
        tb = time.time() - t0 - ta
        name = os.path.basename(path)
        print(name, f"{w}x{h}", " ".join(f"{k}={v:.2f}" for k, v in row.items()),
              f"tA={ta:.1f}s tB={tb:.1f}s", flush=True)
        for k, v in row.items():
            totals.setdefault(k, []).append(v)
    print("mean", " ".join(f"{k}={np.mean(v):.2f}" for k, v in totals.items()))


if __name__ == "__main__":
    main()
