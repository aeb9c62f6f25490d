#!/bin/bash
# Device call B: four fine-tuning variants at once on wgpu, from models/default, on 30,000
# training images (data_batch_1..3, re-split into five files as rvq's CIFAR reader wants).
exec > >(tee $OUT/b.log) 2>&1
T0=$(date +%s); t() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
[ -x /tmp/w/rvq ] || { echo "fresh machine: call A's setup is gone"; exit 3; }
[ -e /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export XDG_RUNTIME_DIR=$(mktemp -d)
R=/tmp/w/rvq; S=${1:-$(cat /tmp/w/steps)}
mkdir -p /tmp/t && xz -dc .dev2/b.xz | cat /tmp/w/b1.bin - > /tmp/w/train.bin
ls -l /tmp/w/train.bin
(cd /tmp/t && split -b $((3073*6400)) -d -a 1 /tmp/w/train.bin part && for i in 0 1 2 3 4; do mv part$i data_batch_$((i+1)).bin; done)
cp /tmp/d/test_batch.bin /tmp/t/ && ls -l /tmp/t
t data ready, $S steps per variant
run() { # name lr dropout weights
  local w=(); [ -n "$4" ] && w=(--dropout-weights $4)
  timeout 420 $R train --backend wgpu --data /tmp/t --out /tmp/w/v-$1 --from models/default --lr $2 --max-steps $S --epochs 100 --checkpoint-every 250 --dropout $3 "${w[@]}" > /tmp/w/v-$1.log 2>&1
  echo "variant $1 exit $?"
}
pids=()
run ctl 3e-4 0.5 "" & pids+=($!); run uni 3e-4 1.0 "" & pids+=($!)
run low 3e-4 1.0 4,2,1,1,1,1,1,1 & pids+=($!); run lowhi 1e-3 1.0 4,2,1,1,1,1,1,1 & pids+=($!)
wait "${pids[@]}"  # not a bare wait: that also waits for the tee of the log
t training done
for v in ctl uni low lowhi; do
  echo "== $v"; grep -E "validation|trained|error" /tmp/w/v-$v.log; tail -2 /tmp/w/v-$v.log
  d=/tmp/w/v-$v; [ -e $d/model.bpk ] || d=$d/checkpoint
  tar -cf $OUT/v-$v.tar -C $d model.bpk config.json $( [ -e $d/card.json ] && echo card.json )
done
t done
