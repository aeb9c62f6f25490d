#!/bin/bash
# Device call A: loaders, binary, data; wgpu against the CPU on a real GPU (archives of the
# samples and of CIFAR-10 test images 0..999 byte for byte, decoded pixels); rvq bench on
# wgpu; wgpu training speed, one run alone and four at once. Staged by scripts/gpu/stage.sh.
exec > >(tee $OUT/a.log) 2>&1
T0=$(date +%s); t() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
ls /usr/share/vulkan/icd.d/ /etc/vulkan/icd.d/ 2>/dev/null
[ -e /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export XDG_RUNTIME_DIR=$(mktemp -d)
mkdir -p /tmp/w /tmp/d
xz -dc .dev/rvq.xz > /tmp/w/rvq && chmod +x /tmp/w/rvq
R=/tmp/w/rvq
xz -dc .dev/a.xz > /tmp/w/all.bin
head -c 3073000 /tmp/w/all.bin > /tmp/d/test_batch.bin
tail -c +3073001 /tmp/w/all.bin > /tmp/w/b1.bin && rm /tmp/w/all.bin
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
lscpu | grep -E "Model name|^CPU\(s\)"
t setup done

# CIFAR test images 0..999 as PNGs (python: numpy + pillow are there)
python3 - <<'PY'
import numpy as np, os
from PIL import Image
b = np.fromfile('/tmp/d/test_batch.bin', dtype=np.uint8).reshape(-1, 3073)
os.makedirs('/tmp/w/png', exist_ok=True)
for i, r in enumerate(b):
    Image.fromarray(r[1:].reshape(3, 32, 32).transpose(1, 2, 0)).save(f'/tmp/w/png/{i:04d}.png')
PY
for be in cpu wgpu; do
  $R --verbose encode --backend $be -o /tmp/w/s-$be.rvq samples/*.png
  $R --verbose encode --backend $be -o /tmp/w/c-$be.rvq /tmp/w/png
  t encoded $be
done
ls -l /tmp/w/*.rvq
cmp /tmp/w/s-cpu.rvq /tmp/w/s-wgpu.rvq && echo "PARITY samples archives identical"
cmp /tmp/w/c-cpu.rvq /tmp/w/c-wgpu.rvq && echo "PARITY cifar1000 archives identical"
for be in cpu wgpu; do $R decode --backend $be -o /tmp/w/ds-$be /tmp/w/s-cpu.rvq; $R decode --backend $be -o /tmp/w/dc-$be /tmp/w/c-cpu.rvq; done
python3 - <<'PY'
import numpy as np, os
from PIL import Image
for k in ['ds', 'dc']:
    worst, n, diff = 0, 0, 0
    for f in sorted(os.listdir(f'/tmp/w/{k}-cpu')):
        a = np.asarray(Image.open(f'/tmp/w/{k}-cpu/{f}')).astype(int)
        b = np.asarray(Image.open(f'/tmp/w/{k}-wgpu/{f}')).astype(int)
        d = np.abs(a - b); worst = max(worst, d.max()); n += d.size; diff += (d > 0).sum()
    print(f'PARITY decode {k}: largest difference {worst}/255, {diff}/{n} values differ')
PY
t parity done
$R bench --backend wgpu --runs 3 --json $OUT/bench-wgpu.json 2>&1 | tail -25
t bench wgpu done
# wgpu training speed, one run alone and four at once (call B trains four variants at once)
mkdir -p /tmp/p && for i in 1 2 3 4 5; do cp /tmp/w/b1.bin /tmp/p/data_batch_$i.bin; done; cp /tmp/d/test_batch.bin /tmp/p/
probe() {
  local pids=()
  for i in $(seq $1); do
    (timeout $2 $R train --backend wgpu --data /tmp/p --out /tmp/w/probe$1-$i --from models/default --lr 3e-4 --max-steps 100000 --checkpoint-every 100000 --dropout 1 2>&1 | while read -r l; do echo "$(date +%s.%N) $l"; done > /tmp/w/probe$1-$i.log) & pids+=($!)
  done
  wait "${pids[@]}"
}
probe 1 45; t probe1 done; probe 4 45; t probe4 done
tail -n 3 /tmp/w/probe1-1.log /tmp/w/probe4-1.log
python3 - <<'PY'
import glob, re
def rate(f):
    pts = [(float(l.split()[0]), int(m.group(1))) for l in open(f) if (m := re.search(r' step (\d+) ', l))]
    return (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0]) if len(pts) > 1 else 0.0
r1 = rate('/tmp/w/probe1-1.log'); r4 = [rate(f) for f in sorted(glob.glob('/tmp/w/probe4-*.log'))]
print(f'TRAIN wgpu steps/s (batch 128): alone {r1:.2f}; four at once {r4}')
steps = max(400, int(min(r4) * 330 / 50) * 50)
open('/tmp/w/steps', 'w').write(str(steps)); print('call B steps per variant:', steps)
PY
t probe done
