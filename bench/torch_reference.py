#!/usr/bin/env python3
"""The rvq model in PyTorch: the peer rvq's own benchmark is measured against.

It loads weights written by `rvq export` into the same architecture, checks that it computes
what rvq computes (on reference tensors written by `rvq export --reference`), then times
encoding (pixels -> codebook indices) and decoding (indices -> pixels) the way `rvq bench`
does: 32x32 images in one batch, and one large image.

    rvq export -o model.safetensors --reference reference.safetensors
    python bench/torch_reference.py model.safetensors reference.safetensors

Needs torch, safetensors and numpy (pip install torch safetensors numpy). Exits non-zero if the
reconstructions differ from rvq's by more than --tolerance.
"""

import argparse
import json
import math
import platform
import statistics
import sys
import time

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F


class ResBlock(nn.Module):
    """x + conv1x1(relu(conv3x3(relu(x)))), as crates/rvq/src/model.rs."""

    def __init__(self, channels, hidden):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x):
        return x + self.conv2(torch.relu(self.conv1(torch.relu(x))))


class RvqVae(nn.Module):
    """Same layers, same names as rvq's RvqVae, so that the exported state dict loads as is."""

    def __init__(self, cfg):
        super().__init__()
        stages = int(math.log2(cfg["grid_factor"]))
        widths = cfg["channels"][len(cfg["channels"]) - stages :]
        inner = widths[-1]
        ins = [3] + widths[:-1]
        self.down = nn.ModuleList(
            nn.Conv2d(i, o, 3, stride=2, padding=1) for i, o in zip(ins, widths)
        )
        self.enc_res = nn.ModuleList(
            ResBlock(inner, cfg["res_channels"]) for _ in range(cfg["res_blocks"])
        )
        self.to_latent = nn.Conv2d(inner, cfg["latent_dim"], 1)
        self.from_latent = nn.Conv2d(cfg["latent_dim"], inner, 1)
        self.dec_res = nn.ModuleList(
            ResBlock(inner, cfg["res_channels"]) for _ in range(cfg["res_blocks"])
        )
        outs = list(reversed(widths))[1:] + [3]
        ups_in = [inner] + outs[:-1]
        if cfg.get("upsample", "transposed") == "shuffle":
            self.up = nn.ModuleList()
            self.up_shuffle = nn.ModuleList(
                nn.Conv2d(i, 4 * o, 3, padding=1) for i, o in zip(ups_in, outs)
            )
        else:
            self.up = nn.ModuleList(
                nn.ConvTranspose2d(i, o, 4, stride=2, padding=1) for i, o in zip(ups_in, outs)
            )
            self.up_shuffle = nn.ModuleList()
        per_stage = cfg.get("up_res_blocks", 0)
        self.up_res = nn.ModuleList(
            ResBlock(o, cfg["res_channels"]) for o in outs[:-1] for _ in range(per_stage)
        )
        self.per_stage = per_stage
        self.grid = cfg["grid_factor"]
        if cfg.get("linear_path", False):
            patch = 3 * self.grid * self.grid
            self.lin_enc = nn.Conv2d(patch, cfg["latent_dim"], 1)
            self.lin_dec = nn.Conv2d(cfg["latent_dim"], patch, 1)
        else:
            self.lin_enc = self.lin_dec = None
        # With depth_input, each cell's depth (one-hot over 1..n_q) is added through a 1x1
        # convolution before each decoder residual block and after the last.
        if cfg.get("depth_input", False):
            self.depth_in = nn.ModuleList(
                nn.Conv2d(cfg["num_codebooks"], inner, 1, bias=False)
                for _ in range(cfg["res_blocks"] + 1)
            )
        else:
            self.depth_in = None
        if cfg["quantize"]:
            shape = (cfg["num_codebooks"], cfg["codebook_size"], cfg["latent_dim"])
            self.register_buffer("codebooks", torch.zeros(shape))
        else:
            self.codebooks = None

    def encode(self, images):
        x = images
        for conv in self.down:
            x = torch.relu(conv(x))
        for block in self.enc_res:
            x = block(x)
        z = self.to_latent(torch.relu(x))
        if self.lin_enc is not None:
            z = z + self.lin_enc(F.pixel_unshuffle(images, self.grid))
        return z

    def decode(self, latents, depths=None):
        """depths: [b, h, w] ints in 1..n_q (None: every cell at n_q); read only with depth_input."""
        x = self.from_latent(latents)
        onehot = None
        if self.depth_in is not None:
            n_q = self.depth_in[0].in_channels
            b, _, h, w = latents.shape
            if depths is None:
                depths = torch.full((b, h, w), n_q, device=latents.device)
            # As in rvq: 0 (unquantized) or anything past n_q counts as n_q.
            depths = torch.where((depths < 1) | (depths > n_q), n_q, depths)
            onehot = F.one_hot(depths.long() - 1, n_q).permute(0, 3, 1, 2).to(latents.dtype)
            x = x + self.depth_in[0](onehot)
        for i, block in enumerate(self.dec_res):
            x = block(x)
            if onehot is not None:
                x = x + self.depth_in[i + 1](onehot)
        for stage, conv in enumerate(self.up):
            x = self.after_upsampling(conv(torch.relu(x)), stage)
        for stage, conv in enumerate(self.up_shuffle):
            x = self.after_upsampling(F.pixel_shuffle(conv(torch.relu(x)), 2), stage)
        if self.lin_dec is None:
            return torch.sigmoid(x)
        x = x + F.pixel_shuffle(self.lin_dec(latents), self.grid)
        return x.clamp(0.0, 1.0)

    def after_upsampling(self, x, stage):
        n = self.per_stage
        for block in self.up_res[stage * n : (stage + 1) * n]:
            x = block(x)
        return x

    def quantize(self, latents, depth):
        """Indices [b, depth, h, w]: nearest entry by |c|^2 - 2 x.c, level by level."""
        b, d, h, w = latents.shape
        residual = latents.permute(0, 2, 3, 1).reshape(-1, d)
        chosen = []
        for level in range(depth):
            book = self.codebooks[level]
            scores = (book * book).sum(1)[None, :] - 2.0 * residual @ book.T
            idx = scores.argmin(1)
            residual = residual - book[idx]
            chosen.append(idx.reshape(b, h, w))
        return torch.stack(chosen, 1)

    def dequantize(self, indices):
        b, depth, h, w = indices.shape
        total = 0
        for level in range(depth):
            total = total + self.codebooks[level][indices[:, level]]
        return total.permute(0, 3, 1, 2)


def load(model_path, device):
    with safe_open(model_path, "pt") as f:
        meta = f.metadata() or {}
    if "rvq_config" not in meta:
        sys.exit(f"{model_path}: no rvq_config metadata; write it with `rvq export`")
    cfg = json.loads(meta["rvq_config"])
    net = RvqVae(cfg)
    weights = load_file(model_path)
    missing, unexpected = net.load_state_dict(weights, strict=False)
    if missing or unexpected:
        sys.exit(f"{model_path}: missing {missing}, unexpected {unexpected}")
    return net.to(device).eval(), cfg, meta.get("rvq_fingerprint")


def check(net, cfg, fingerprint, reference_path, device, tolerance):
    with safe_open(reference_path, "pt") as f:
        meta = f.metadata() or {}
    if meta.get("rvq_fingerprint") != fingerprint:
        sys.exit(f"{reference_path} was made by model {meta.get('rvq_fingerprint')}, "
                 f"the weights are model {fingerprint}")
    ref = load_file(reference_path, device=str(device))
    report = {"reference_images": int(ref["images"].shape[0])}
    with torch.inference_mode():
        latents = net.encode(ref["images"])
        report["latents_max_abs_diff"] = (latents - ref["latents"]).abs().max().item()
        ok = True
        if cfg["quantize"]:
            depth = cfg["num_codebooks"]
            ours = net.quantize(latents, depth)
            report["indices_equal_fraction"] = (ours == ref["indices"]).float().mean().item()
            # Decode rvq's own indices, so that a near-tie in the search cannot hide or fake a
            # difference in the decoder.
            decoded = net.decode(net.dequantize(ref["indices"]))
            diff = (decoded - ref["decoded"]).abs().max().item()
            report["decoded_max_abs_diff"] = diff
            ok = diff <= tolerance and report["indices_equal_fraction"] >= 0.999
    return ok, report


def synthetic(width, height, seed):
    """The synthetic image of rvq bench (src/bench.rs), [h, w, 3] u8."""
    x = np.arange(width, dtype=np.int64)[None, :, None]
    y = np.arange(height, dtype=np.int64)[:, None, None]
    c = np.arange(3, dtype=np.int64)[None, None, :]
    v = ((x * (3 + c) + y * (5 + seed % 7) + seed * 17) % 256).astype(np.float32)
    w = np.sin(x.astype(np.float32) * 0.05 + c.astype(np.float32)) * 60.0 + 128.0 + v * 0.25
    return np.minimum(np.maximum(w, 0).astype(np.uint32), 255).astype(np.uint8)


def timed(runs, fn, sync):
    fn()
    sync()
    times = []
    for _ in range(max(runs, 1)):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    # The median, and the fastest run (steadier on a shared machine), as rvq bench reports.
    return statistics.median(times), min(times)


def bench(net, cfg, device, batch, large, runs):
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    depth = cfg["num_codebooks"]
    # At least 1,024 images per timed run, in batches of `batch`, as rvq bench does.
    count = batch * -(-1024 // batch)
    sets = [
        (f"{count} 32×32 images, batch {batch}",
         np.stack([synthetic(32, 32, i) for i in range(count)])),
        (f"one {large[0]}×{large[1]} image", synthetic(large[0], large[1], 1)[None]),
    ]
    rows = []
    for label, pixels in sets:
        n = pixels.shape[0]
        state = {}

        def encode():
            # Pixels in, indices out on the host, as rvq encode hands them to the archive.
            out = []
            for s in range(0, n, batch):
                x = torch.from_numpy(pixels[s : s + batch]).to(device)
                x = x.permute(0, 3, 1, 2).float() / 255.0
                out.append(net.quantize(net.encode(x), depth).to(torch.int32).cpu())
            state["indices"] = out

        def decode():
            for chunk in state["indices"]:
                y = net.decode(net.dequantize(chunk.to(device).long()))
                (y * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu()

        with torch.inference_mode():
            for op, fn in (("encode", encode), ("decode", decode)):
                s, fastest = timed(runs, fn, sync)
                rows.append({"what": f"{op} {label}", "images": n, "runs": runs,
                             "seconds": s, "images_per_second": n / s,
                             "fastest_seconds": fastest})
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="weights from `rvq export`")
    p.add_argument("reference", help="tensors from `rvq export --reference`")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--large", default="768x512", help="WIDTHxHEIGHT of the large image")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--tolerance", type=float, default=1e-4)
    p.add_argument("--check-only", action="store_true")
    p.add_argument("--json", help="also write the results here")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    net, cfg, fingerprint = load(a.model, device)
    ok, report = check(net, cfg, fingerprint, a.reference, device, a.tolerance)
    for k, v in report.items():
        print(f"{k}: {v}")
    print(f"check: {'PASS' if ok else 'FAIL'} (tolerance {a.tolerance})")
    results = {"torch": torch.__version__, "device": str(device),
               "threads": torch.get_num_threads(), "machine": platform.processor() or
               platform.machine(), "fingerprint": fingerprint, "check": report, "ok": ok}
    if ok and not a.check_only:
        large = tuple(int(v) for v in a.large.lower().split("x"))
        rows = bench(net, cfg, device, a.batch, large, a.runs)
        print(f"\nPyTorch {torch.__version__} on {device}, {torch.get_num_threads()} threads\n")
        print("| operation | images | median s | images/s | fastest s |\n|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['what']} | {r['images']} | {r['seconds']:.4f} | "
                  f"{r['images_per_second']:.1f} | {r['fastest_seconds']:.4f} |")
        results["bench"] = rows
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
