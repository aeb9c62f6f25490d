import json, sys, math
def load(p, codec="rvq"):
    return sorted((r["bpp"], r["psnr"], r["quality"]) for r in json.load(open(p)) if r["codec"] == codec)
old, new = load(sys.argv[1]), load(sys.argv[2])
def interp(curve, x):
    for (x0,y0,_),(x1,y1,_) in zip(curve, curve[1:]):
        if x0 <= x <= x1:
            t = (math.log(x)-math.log(x0))/(math.log(x1)-math.log(x0)); return y0+t*(y1-y0)
    return None
ds=[]
for b,p,q in new:
    o = interp(old, b)
    print(f"q{q}: new {b:.4f} bpp {p:.3f} dB; old at that bpp {o if o is None else round(o,3)}; d {'' if o is None else round(p-o,3)}")
    if o is not None: ds.append(p-o)
for b,p,q in old: print(f"  old q{q}: {b:.4f} bpp {p:.3f}")
print("mean d", sum(ds)/len(ds) if ds else None)
