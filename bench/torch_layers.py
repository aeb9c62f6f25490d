#!/usr/bin/env python3
"""The layer shapes of crates/rvq/examples/layer_speed.rs (the default model at batch 64,
random weights) timed in PyTorch on the CPU with 2 threads (or --threads N): the same lines,
so the two runs compare layer by layer. A benchmark, not a test.

Usage: python bench/torch_layers.py [--threads N]
"""
import argparse
import time

import torch

nn = torch.nn
B = 64


def timed(name, macs, f):
    with torch.no_grad():
        f()
        runs = 20
        start = time.perf_counter()
        for _ in range(runs):
            f()
        ms = (time.perf_counter() - start) * 1000 / runs
    print(f"{name:40} {ms:8.3f} ms  {macs / ms / 1e6:6.1f} GMAC/s")
    return ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    torch.set_num_threads(ap.parse_args().threads)
    total = 0.0
    for cin, cout, s in [(3, 64, 32), (64, 128, 16), (128, 256, 8)]:
        x = torch.rand(B, cin, s, s)
        c = nn.Conv2d(cin, cout, 3, 2, 1)
        total += timed(f"enc conv3x3 s2 {cin}->{cout} @{s}", 9 * cin * cout * (s // 2) ** 2 * B, lambda: c(x))
    x, h = torch.rand(B, 256, 4, 4), torch.rand(B, 64, 4, 4)
    r1, r2 = nn.Conv2d(256, 64, 3, 1, 1), nn.Conv2d(64, 256, 1)
    total += 2 * timed("res conv3x3 256->64 @4 (x2)", 9 * 256 * 64 * 16 * B, lambda: r1(x))
    total += 2 * timed("res conv1x1 64->256 @4 (x2)", 64 * 256 * 16 * B, lambda: r2(h))
    rows, book = torch.rand(512, 64), torch.rand(64, 1024)
    total += 16 * timed("search 512x64 · 64x1024 (x16)", 512 * 64 * 1024, lambda: rows @ book)
    total += 16 * timed("search + argmin (x16)", 512 * 64 * 1024, lambda: (rows @ book).argmin(1))
    print(f"encoder layers (those above) {total:.1f} ms")
    total = 0.0
    for cin, cout, s in [(256, 128, 4), (128, 64, 8), (64, 3, 16)]:
        x = torch.rand(B, cin, s, s)
        c = nn.ConvTranspose2d(cin, cout, 4, 2, 1)
        total += timed(f"up transposed {cin}->{cout} @{s}", 16 * cin * cout * s * s * B, lambda: torch.relu(c(x)))
    print(f"upsampling layers {total:.1f} ms")


if __name__ == "__main__":
    main()
