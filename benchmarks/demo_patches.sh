#!/usr/bin/env bash
# Do finer patches lift the demo SAM on small objects? Two models trained from scratch that differ
# in the patch side alone: the packaged architecture (4 encoder blocks of 128 channels, a
# 128-channel decoder) with 16 px patches and with 8 px patches (four times the tokens; the
# windows keep 8 x 8 tokens). Both train on stage 4's data (45 % crowded randomised scenes,
# the rest the training generator's) with the same seed, schedule and batches, at the same
# time; then each is scored on the independent family's validation split (40 scenes; box,
# 1 point best of 3, 3 interactive points), with bilinear and with guided masks, the latter
# also at the same reach in pixels for both (the library's reach is 3 logit cells, and 8 px
# patches' cells are half as wide).
#
#   benchmarks/demo_patches.sh [OUTDIR] [STEPS]   # default: /work/demo_patches, 6000 steps
#
# Sized for a GPU (DEVICE=cuda, the default where torch sees one): a small model's step is
# short there, so each run gets WORKERS processes that build its batches (default 6; scene
# generation builds a batch of 4 in ~70 ms on one core). On 2 CPU cores, a pilot at 256 px:
#   FRAME=256 DEVICE=cpu WORKERS=0 benchmarks/demo_patches.sh /tmp/patches 1500
# took 22 min for 16 px and 64 min for 8 px patches (two runs at once, one thread each).
# On a lent GPU machine (offline; its python3 has torch, transformers, OpenCV and SciPy), first
#   python3 -m pip install -q --no-deps --no-build-isolation -e . && export PYTHON=python3
# Reruns resume each run from its checkpoint (every 250 steps) and skip what is scored.
# The 8 px model at 512 px has 2.28 M parameters (4.3 MB in float16, for its larger position
# embedding; the size budget is 5 MB), the 16 px one 1.95 M (3.7 MB), as packaged. Logs:
# OUTDIR/patchP.log and OUTDIR/eval.log.
set -euo pipefail
OUT="${1:-/work/demo_patches}"
STEPS="${2:-6000}"
PYTHON="${PYTHON:-python}"
FRAME="${FRAME:-512}"
THREADS="${THREADS:-1}"
if [ -z "${DEVICE:-}" ]; then
    DEVICE=$("$PYTHON" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
fi
WORKERS="${WORKERS:-6}"
mkdir -p "$OUT"

train() {  # train PATCH: one run from scratch, its own folder and log
    "$PYTHON" -m composeseg.pipelines.cli train --synthetic --randomized 0.45 --dense-layouts \
        --model-config demo --patch-size "$1" --image-size "$FRAME" --decoder-width 128 \
        -o "$OUT/patch$1" --resume --no-progress --device "$DEVICE" \
        --steps "$STEPS" --batch-images 4 --prompts-per-image 6 --interactive-rounds 2 \
        --lr 8e-4 --warmup-steps 150 --weight-decay 0.05 --val-every 500 --val-images 16 \
        --checkpoint-every 250 --seed 0 --threads "$THREADS" --data-workers "$WORKERS" \
        --save-dtype float16 >> "$OUT/patch$1.log" 2>&1
}

score() {  # score PATCH UPSAMPLING: the independent validation split
    local json="$OUT/patch$1-$STEPS-$2.json"
    [ -f "$json" ] && return
    "$PYTHON" -m composeseg.pipelines.cli eval points --synthetic 40 --family independent \
        --split validation --sam "$OUT/patch$1/model" --device "$DEVICE" --upsampling "$2" \
        -o "$json" > /dev/null 2>> "$OUT/eval.log"
}

score_reach() {  # score_reach PATCH: guided masks with the reach in pixels of 16 px patches
    local json="$OUT/patch$1-$STEPS-guided16.json"
    [ -f "$json" ] && return
    "$PYTHON" - "$OUT/patch$1/model" "$DEVICE" "$json" <<'PY' 2>> "$OUT/eval.log"
import functools
import json
import sys

import composeseg.upsampling as upsampling
from composeseg import load_sam
from composeseg.evaluation.points import point_prompt_miou, scene_instances
from composeseg.synthetic.independent import independent_seeds

sam = load_sam(sys.argv[1], device=sys.argv[2], upsampling="guided")
# guided masks reach GUIDED_CELLS logit cells; 8 px patches' cells are half as wide, so this
# gives them the pixels that 16 px patches' cells reach (the library's default is in cells)
patch = sam.model.config.vision_config.patch_size
cells = upsampling.GUIDED_CELLS * 16 / patch
upsampling.guided_radius = functools.partial(upsampling.guided_radius, cells=cells)
samples = scene_instances(independent_seeds("validation", 40), family="independent")
metrics = point_prompt_miou(sam, samples, interactive_points=3)
with open(sys.argv[3], "w") as file:
    json.dump(metrics.as_dict(), file)
PY
}

export OMP_NUM_THREADS="$THREADS"
train 16 & first=$!
train 8 & second=$!
wait "$first" || { tail -5 "$OUT/patch16.log"; exit 1; }
wait "$second" || { tail -5 "$OUT/patch8.log"; exit 1; }
for patch in 16 8; do
    for upsampling in bilinear guided; do
        score "$patch" "$upsampling"
    done
    score_reach "$patch"
done
"$PYTHON" - "$OUT" "$STEPS" <<'PY'
import json
import math
import sys
from pathlib import Path

from safetensors import safe_open

out, steps = Path(sys.argv[1]), sys.argv[2]
KEYS = ("box", "one_point_oracle", "interactive")
# training s: from the run's last (re)start to its end; guided16: guided masks reaching as far
# in pixels as with 16 px patches (3 cells of 16 px patches, 6 of 8 px ones)
print("| patch | parameters | float16 MB | steps | training s | masks | box | 1 point | 3 points |")
print("|---|---|---|---|---|---|---|---|---|")
for patch in (16, 8):
    run = out / f"patch{patch}"
    with safe_open(str(run / "model" / "model.safetensors"), "pt") as weights:
        count = sum(math.prod(weights.get_slice(k).get_shape()) for k in weights.keys())
    seconds = json.loads((run / "history.json").read_text())[-1]["seconds"]
    for upsampling in ("bilinear", "guided", "guided16"):
        scores = json.loads((out / f"patch{patch}-{steps}-{upsampling}.json").read_text())
        cells = " | ".join(f"{scores[k]:.3f}" for k in KEYS)
        print(f"| {patch} px | {count / 1e6:.2f} M | {2 * count / 2**20:.1f} | {steps} | "
              f"{seconds:.0f} | {upsampling} | {cells} |")
PY
