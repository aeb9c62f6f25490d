"""Each point of any.json against the shipped ladder: half.json (qualities 0-70) with
../../photos-dev/filters-64.json's qualities 90 and 100 (the same encoder there: no image is
tried at half size from quality 60), interpolated linearly in log bpp as delta.py does."""
import json, math, os

here = os.path.dirname(os.path.abspath(__file__))
def rvq(path, keep=lambda q: True):
    return [r for r in json.load(open(os.path.join(here, path))) if r["codec"] == "rvq" and keep(r["quality"])]
ref = sorted((r["bpp"], r["psnr"]) for r in rvq("../half.json") + rvq("../../photos-dev/filters-64.json", lambda q: q >= 90))
def at(x):
    for (x0, y0), (x1, y1) in zip(ref, ref[1:]):
        if x0 <= x <= x1:
            return y0 + (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0)) * (y1 - y0)
for r in sorted(rvq("any.json"), key=lambda r: r["quality"]):
    y = at(r["bpp"])
    print(f"q{r['quality']}: {r['bpp']:.3f} bpp {r['psnr']:.2f} dB; shipped ladder there {y:.2f}; d {r['psnr'] - y:+.2f}")
