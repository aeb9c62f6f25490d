"""Throwaway trial (2026-12-06, tenth session), kept so that it is not repeated: restoration
filters of other designs fitted by least squares to a decode, in floating point, without their
bytes. Per channel: the pixel's (2r+1)^2 neighbourhood in point-symmetric pairs, the other two
channels and a bias; one filter per class of pixels, classes by the 4x4 block's activity
(quantiles, NACT of them) and direction (NDIR: 1, 3 or 5 classes), times square units of UNIT
pixels (environment; 0 = the whole image). Taps rounded to 1/256, bias solved again.

    python3 alf.py DEV_DIR DECODED_DIR r NACT NDIR BLOCK      # UNIT=128 python3 alf.py ...

DECODED_DIR: `rvq decode` of `rvq encode --no-filter --quality 90 DEV_DIR`. Prints the mean
PSNR gain over the images.
"""
import os, sys, numpy as np
from PIL import Image
def psnr(a,b):
    m=np.mean((a.astype(np.float64)-b.astype(np.float64))**2); return 10*np.log10(255**2/m)
def cols_for(d, r, c):
    H,W=d.shape[:2]; p=np.pad(d,((r,r),(r,r),(0,0)),mode='edge')
    seen=set(); cols=[]
    for dy in range(-r,r+1):
        for dx in range(-r,r+1):
            if (dy,dx) in seen: continue
            seen.add((dy,dx)); seen.add((-dy,-dx))
            a=p[r+dy:r+dy+H, r+dx:r+dx+W, c]
            if (dy,dx)!=(0,0): a=a+p[r-dy:r-dy+H, r-dx:r-dx+W, c]
            cols.append(a.ravel())
    for c2 in range(3):
        if c2!=c: cols.append(d[:,:,c2].ravel())
    cols.append(np.ones(H*W))
    return np.stack(cols,1)
def classes(d, nact, ndir, blk):
    g=d.astype(np.float64).mean(2); H,W=g.shape
    p=np.pad(g,1,mode='edge')
    c=p[1:-1,1:-1]
    lh=np.abs(2*c-p[1:-1,:-2]-p[1:-1,2:]); lv=np.abs(2*c-p[:-2,1:-1]-p[2:,1:-1])
    d1=np.abs(2*c-p[:-2,:-2]-p[2:,2:]); d2=np.abs(2*c-p[:-2,2:]-p[2:,:-2])
    def bs(a):
        Hb=(H+blk-1)//blk; Wb=(W+blk-1)//blk
        a=np.pad(a,((0,Hb*blk-H),(0,Wb*blk-W)),mode='edge')
        s=a.reshape(Hb,blk,Wb,blk).sum((1,3))
        return np.repeat(np.repeat(s,blk,0),blk,1)[:H,:W]
    lh,lv,d1,d2=bs(lh),bs(lv),bs(d1),bs(d2)
    act=lh+lv
    # activity quantile classes per image
    qs=np.quantile(act,np.linspace(0,1,nact+1)[1:-1])
    a=np.searchsorted(qs,act)
    if ndir==1: return a
    hv=np.maximum(lh,lv)/(np.minimum(lh,lv)+1e-6); dg=np.maximum(d1,d2)/(np.minimum(d1,d2)+1e-6)
    dirc=np.zeros_like(a)
    strong=np.maximum(hv,dg)>2
    dirc[strong & (hv>=dg)]=1; dirc[strong & (dg>hv)]=2
    if ndir==5:
        dirc[strong & (hv>=dg) & (lh>lv)]=3; dirc[strong & (dg>hv) & (d1>d2)]=4
    return a*ndir+dirc
def run(o,d,r,nact,ndir,blk):
    cl=classes(d,nact,ndir,blk)
    U=int(os.environ.get('UNIT','0'))
    if U:
        H,W=cl.shape; uy=np.arange(H)[:,None]//U; ux=np.arange(W)[None,:]//U
        cl=cl+1000*(uy*((W+U-1)//U)+ux)
    cl=cl.ravel()
    res=np.empty(o.shape)
    for c in range(3):
        X=cols_for(d.astype(np.float64),r,c); y=o[:,:,c].astype(np.float64).ravel(); out=np.empty_like(y)
        for k in np.unique(cl):
            m=cl==k
            w,*_=np.linalg.lstsq(X[m],y[m],rcond=None)
            w=np.round(w*256)/256
            w[-1]=0; w[-1]=np.mean(y[m]-X[m]@w)
            out[m]=X[m]@w
        res[:,:,c]=out.reshape(o.shape[:2])
    return np.clip(np.round(res),0,255), len(np.unique(cl))
DIR, DEC = sys.argv[1], sys.argv[2]
r=int(sys.argv[3]); nact=int(sys.argv[4]); ndir=int(sys.argv[5]); blk=int(sys.argv[6])
tb=ta=0;n=0
for f in sorted(os.listdir(DIR)):
    o=np.array(Image.open(DIR+'/'+f).convert('RGB')); d=np.array(Image.open(DEC+'/'+f).convert('RGB'))
    res,nc=run(o,d,r,nact,ndir,blk)
    b=psnr(o,d); a=psnr(o,res); tb+=b; ta+=a; n+=1
print('r',r,'act',nact,'dir',ndir,'blk',blk,'gain %.3f'%((ta-tb)/n), 'classes',nc)
