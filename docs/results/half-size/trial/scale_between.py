"""Development photographs coded at fractions of their size: each image of DEV downscaled by
Lanczos, encoded by rvq (--no-half) at each quality, decoded, upscaled by bicubic, PSNR against
the original; prints bpp and PSNR averaged per image per scale and quality.

Usage: python scale_between.py RVQ DEV SCALES QUALITIES (e.g. 0.6667,0.75,1.0 50,60,70,80,90)
"""
import os, sys, subprocess, math, tempfile
import numpy as np
from PIL import Image
rvq = sys.argv[1]; dev = sys.argv[2]; scales = [float(x) for x in sys.argv[3].split(',')]; qs = [int(x) for x in sys.argv[4].split(',')]
files = sorted(f for f in os.listdir(dev) if f.endswith('.png'))
work = tempfile.mkdtemp()  # scratch: the scaled images and their archives
def psnr(a, b): return 10*math.log10(255**2/np.mean((a.astype(float)-b.astype(float))**2))
for s in scales:
    for q in qs:
        bits = 0; px = 0; ps = []
        for f in files:
            im = Image.open(f'{dev}/{f}').convert('RGB'); W, H = im.size
            if s != 1.0:
                small = im.resize((round(W*s), round(H*s)), Image.LANCZOS)
            else:
                small = im
            small.save(f'{work}/{f}')
            subprocess.run([rvq,'encode','--backend','cpu','--no-half','--quality',str(q),'--force','-o',f'{work}/a.rvq',f'{work}/{f}'],check=True,capture_output=True)
            subprocess.run([rvq,'decode','--backend','cpu','--force','-o',f'{work}/out',f'{work}/a.rvq'],check=True,capture_output=True)
            d = Image.open(f'{work}/out/{f}').convert('RGB')
            if s != 1.0: d = d.resize((W, H), Image.BICUBIC)
            bits += os.path.getsize(f'{work}/a.rvq')*8; px += W*H
            ps.append(psnr(np.asarray(im), np.asarray(d)))
        print(f'scale {s:.3f} q {q}: {bits/px:.3f} bpp {np.mean(ps):.2f} dB', flush=True)
