"""Throwaway trial (2026-12-06, tenth session): a second, chroma-only filter after rvq's
restoration filter. In YCbCr (BT.601), Cb and Cr each fitted by least squares over their own
(2r+1)^2 neighbourhood in symmetric pairs, luma's (2ry+1)^2 and the other chroma channel, per
image (U = 0) or per square unit of U pixels; floating point, bytes not counted.

    python3 chroma.py DEV_DIR DECODED_DIR r U ry

DECODED_DIR: `rvq decode` of `rvq encode --quality 90 DEV_DIR` (filters on), or of an encode
with `--no-filter` for the chroma filter alone.
"""
import os, sys, numpy as np
from PIL import Image
DIR=sys.argv[1]; src=sys.argv[2]; r=int(sys.argv[3]); U=int(sys.argv[4]); ry=int(sys.argv[5])
M=np.array([[.299,.587,.114],[-.168736,-.331264,.5],[.5,-.418688,-.081312]])
def psnr(a,b): return 10*np.log10(255**2/np.mean((a-b)**2))
def sym(p,H,W,r,pad):
    seen=set(); cols=[]
    for dy in range(-r,r+1):
        for dx in range(-r,r+1):
            if (dy,dx) in seen: continue
            seen.add((dy,dx)); seen.add((-dy,-dx))
            a=p[pad+dy:pad+dy+H, pad+dx:pad+dx+W]
            if (dy,dx)!=(0,0): a=a+p[pad-dy:pad-dy+H, pad-dx:pad-dx+W]
            cols.append(a.ravel())
    return cols
tb=ta=0;n=0
for f in sorted(os.listdir(DIR)):
    o=np.array(Image.open(DIR+'/'+f).convert('RGB')).astype(float); d=np.array(Image.open(src+'/'+f).convert('RGB')).astype(float)
    H,W=o.shape[:2]; oy=o@M.T; dy_=d@M.T; pad=max(r,ry)
    P=np.pad(dy_,((pad,pad),(pad,pad),(0,0)),mode='edge')
    uy=np.arange(H)[:,None]//max(U,1); ux=np.arange(W)[None,:]//max(U,1); cl=(uy*1000+ux).ravel() if U else np.zeros(H*W,int)
    out=dy_.copy()
    for c in (1,2):
        cols=sym(P[:,:,c],H,W,r,pad)+sym(P[:,:,0],H,W,ry,pad)+[P[pad:pad+H,pad:pad+W,3-c].ravel(), np.ones(H*W)]
        X=np.stack(cols,1); y=oy[:,:,c].ravel(); res=np.empty(H*W)
        for k in np.unique(cl):
            m=cl==k; w,*_=np.linalg.lstsq(X[m],y[m],rcond=None); res[m]=X[m]@w
        out[:,:,c]=res.reshape(H,W)
    rgb=np.clip(np.round(out@np.linalg.inv(M).T),0,255)
    b=psnr(o,d); a=psnr(o,rgb); tb+=b; ta+=a; n+=1
print(src,'r',r,'U',U,'ry',ry,'before %.3f after %.3f gain %.3f'%(tb/n,ta/n,(ta-tb)/n))
