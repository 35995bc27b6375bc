#!/usr/bin/env bash
# What limits the demo SAM on the independent family: more training, depth, pixels or width?
#
#   benchmarks/demo_limits.sh [OUTDIR] [EXPERIMENT...]  # default: /work/demo_limits, all seventeen
#
# Each experiment but the last two continues stage 4's weights with stage 4's data and schedule
# shape (benchmarks/train_demo.sh; 1,800 steps, seed 5), changing one thing. Stage 4's weights were
# the package's until stage 5 replaced them: STAGE4=DIR names them (default: train_demo.sh's
# /work/demo_train-dense/model; `git show 'c46a4bb:composeseg/assets/demo_sam/FILE'` gives the
# packaged copy the measured runs started from):
#   more    the same model (more training alone);
#   deeper  4 more encoder blocks that start as identities (--add-encoder-layers 4);
#   pixels  a 640 px input frame (--image-size 640; 1,200 steps);
#   faster  four times the learning rate (--lr 8e-4, 100 warm-up steps);
#   randomised  randomised scenes only, none of the training generator's (--randomized 1.0);
#   short   the same model on a 900-step schedule (the control of zoomcrops);
#   zoomcrops  half of the training images replaced by windows around one object, 3-8 times
#           its size, as zoomed prompting sees them (--zoom-crops 0.5; 900 steps);
#   widedecoder  the packaged encoder blocks under a new neck, prompt encoder and mask decoder
#           of 128 channels, twice the packaged width (--decoder-width 128; 1,500 steps at
#           --lr 4e-4, 100 warm-up steps, since the new modules start from scratch);
#   newdecoder  its control: the same with new modules of the packaged width (64);
#   widedecoder2, newdecoder2  1,500 more steps of each from its step-1,500 weights (the
#           default --lr 2e-4, seed 6: other scenes); run after widedecoder / newdecoder.
#   widedecoder3  5,000 more steps of the 128-channel run from widedecoder2's step 1,500
#           (seed 7), 8,000 in all; run after widedecoder2.
#   wide640  1,800 steps of widedecoder3's last weights (stage 5) at a 640 px
#           frame on randomised scenes only (--image-size 640 --randomized 1.0, seed 8): the
#           two levers that each added ~0.02-0.03 to stage 4; run after widedecoder3.
#   wide640mix  the same on stage 4's mix (45 % randomised, the rest the training generator's
#           scenes): does keeping the training generator keep the text route? After widedecoder3.
#   wide640soup  no training: the average of widedecoder3's last weights and wide640's, the
#           latter moved back to the 512 px frame (composeseg.train.interpolate, WiSE-FT; listed
#           as step 1,800, the wide640 weights it blends; stage 6, the package's); after wide640.
#   The two measured runs drew their new modules with seed 0 and their data with seed 5; here
#   --seed 5 draws both (composeseg.train.grow.rebuild_decoder takes the run's seed).
#   more6   the packaged SAM's weights (stage 6; guided masks, its refiner left out) on stage
#           4's data for 1,500 steps (seed 9): the control of deeperdecoder6.
#   deeperdecoder6  the same with one more two-way block in the mask decoder, started close to
#           an identity (--add-decoder-layers 1; 2.22 M parameters, 4.5 MB in float16).
# Every 300 steps and at its last step the run is cut (--stop-after, which keeps the whole
# run's schedule, so the resumed run is the same run), its weights are copied out and scored
# on the independent family's validation split (40 scenes; box, 1 point best of 3, 3
# interactive points), on the whole image and zoomed (--zoom 5, in OUTDIR/zoom5), and a table
# of every score is printed.
# Snapshots keep the packaged config, so they draw guided masks when it names them. Reruns
# skip what is scored, and an interrupted run resumes from its last 100-step checkpoint. One
# torch thread per run (THREADS=N for more); the experiments are independent, so two
# invocations can run two at once on two cores.
# Measured on 2 CPU cores: more, faster and randomised ~70 min each, deeper ~90 min, pixels
# ~80 min, short and zoomcrops ~40 min, widedecoder ~65 min and newdecoder ~55 min (two at a
# time); widedecoder3 ~2 h with THREADS=2 (0.72 steps/s, one thread: 0.41); wide640 and
# wide640mix ~75 min each with THREADS=2 (0.41 steps/s); more6 and deeperdecoder6 ~100 min each
# (two at a time, 0.25-0.29 steps/s).
set -euo pipefail
OUT="${1:-/work/demo_limits}"
shift || true
ALL="more deeper pixels faster randomised short zoomcrops widedecoder newdecoder widedecoder2"
ALL+=" newdecoder2 widedecoder3 wide640 wide640mix wide640soup more6 deeperdecoder6"
EXPERIMENTS=("${@:-$ALL}")
PYTHON="${PYTHON:-python}"
THREADS="${THREADS:-1}"
START="$OUT/start"
STAGE6="$OUT/stage6"
STAGE4="${STAGE4:-/work/demo_train-dense/model}"
mkdir -p "$OUT/zoom5"
if [ ! -d "$STAGE6" ]; then  # the packaged SAM without its refiner, which knows only its weights
    "$PYTHON" - "$STAGE6" <<'PY'
import json
import shutil
import sys
from pathlib import Path

from composeseg.loading import DEMO_MODEL_DIR

out = Path(sys.argv[1])
out.mkdir(parents=True)
shutil.copy(DEMO_MODEL_DIR / "model.safetensors", out)
config = json.loads((DEMO_MODEL_DIR / "config.json").read_text())
config["composeseg_upsampling"] = "guided"
(out / "config.json").write_text(json.dumps(config, indent=2))
PY
fi

run() {  # [INIT=DIR] run NAME STEPS [flags...]: train; cut and score every 300 steps and at the end
    local name=$1 steps=$2 init=${INIT:-$START}
    shift 2
    if [ "$init" = "$START" ] && [ ! -d "$START" ]; then
        if [ ! -f "$STAGE4/config.json" ]; then
            echo "no stage 4 weights in $STAGE4 (set STAGE4=DIR)" >&2
            exit 2
        fi
        cp -r "$STAGE4" "$START"
    fi
    local cuts
    cuts=$(seq 300 300 "$steps")
    ((steps % 300 == 0)) || cuts+=" $steps"
    for cut in $cuts; do
        local snap="$OUT/$name-$cut"
        scored "$snap" && continue
        "$PYTHON" -m composeseg.pipelines.cli train --synthetic --randomized 0.45 \
            --dense-layouts --init "$init" -o "$OUT/$name" --resume --no-progress \
            --steps "$steps" --batch-images 4 --prompts-per-image 6 --interactive-rounds 2 \
            --lr 2e-4 --warmup-steps 50 --weight-decay 0.05 --val-every 300 \
            --val-images 16 --checkpoint-every 100 --seed 5 --threads "$THREADS" \
            --save-dtype float16 --stop-after "$cut" "$@"
        rm -rf "$snap" && cp -r "$OUT/$name/model" "$snap"
        score "$snap"
    done
}

scored() {  # scored SNAPSHOT: both of score's files exist (reruns skip the snapshot)
    [ -f "$1.json" ] && [ -f "$OUT/zoom5/$(basename "$1").json" ]
}

score() {  # score SNAPSHOT: the independent validation split, whole image and zoomed
    local snap=$1
    "$PYTHON" -m composeseg.pipelines.cli eval points --synthetic 40 --family independent \
        --split validation --sam "$snap" --device cpu -o "$snap.json" > /dev/null
    "$PYTHON" -m composeseg.pipelines.cli eval points --synthetic 40 --family independent \
        --split validation --sam "$snap" --device cpu --zoom 5 \
        -o "$OUT/zoom5/$(basename "$snap").json" > /dev/null
}

soup() {  # soup NAME START TUNED ALPHA: (1 - ALPHA) START + ALPHA TUNED, at START's frame
    local snap="$OUT/$1"
    scored "$snap" && return
    "$PYTHON" -m composeseg.train.interpolate "$2" "$3" "$4" "$snap"
    score "$snap"
}

export OMP_NUM_THREADS="$THREADS"
for experiment in ${EXPERIMENTS[*]}; do
    case "$experiment" in
        more) run more 1800 ;;
        deeper) run deeper 1800 --add-encoder-layers 4 ;;
        pixels) run pixels 1200 --image-size 640 ;;
        faster) run faster 1800 --lr 8e-4 --warmup-steps 100 ;;
        randomised) run randomised 1800 --randomized 1.0 ;;
        short) run short 900 ;;
        zoomcrops) run zoomcrops 900 --zoom-crops 0.5 ;;
        widedecoder) run widedecoder 1500 --decoder-width 128 --lr 4e-4 --warmup-steps 100 ;;
        newdecoder) run newdecoder 1500 --decoder-width 64 --lr 4e-4 --warmup-steps 100 ;;
        widedecoder2) INIT="$OUT/widedecoder-1500" run widedecoder2 1500 --seed 6 ;;
        newdecoder2) INIT="$OUT/newdecoder-1500" run newdecoder2 1500 --seed 6 ;;
        widedecoder3) INIT="$OUT/widedecoder2-1500" run widedecoder3 5000 --seed 7 ;;
        wide640) INIT="$OUT/widedecoder3-5000" run wide640 1800 --randomized 1.0 \
            --image-size 640 --seed 8 ;;
        wide640mix) INIT="$OUT/widedecoder3-5000" run wide640mix 1800 --image-size 640 --seed 8 ;;
        more6) INIT="$STAGE6" run more6 1500 --seed 9 ;;
        deeperdecoder6) INIT="$STAGE6" run deeperdecoder6 1500 --seed 9 --add-decoder-layers 1 ;;
        wide640soup) soup wide640soup-1800 "$OUT/widedecoder3-5000" "$OUT/wide640-1800" 0.5 ;;
        *) echo "unknown experiment $experiment (more, deeper, pixels, faster, randomised," \
               "short, zoomcrops, widedecoder(2, 3), newdecoder(2), wide640(mix, soup)," \
               "more6, deeperdecoder6)" >&2
            exit 2 ;;
    esac
done
"$PYTHON" - "$OUT" ${EXPERIMENTS[*]} <<'PY'
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
KEYS = ("box", "one_point_oracle", "interactive")
print("| experiment | step | box | 1 point, best of 3 | 3 points | zoom 5: box | 1 point | 3 points |")
print("|---|---|---|---|---|---|---|---|")
for name in sys.argv[2:]:
    for path in sorted(out.glob(f"{name}-*.json"), key=lambda p: int(p.stem.rsplit("-", 1)[1])):
        zoomed = out / "zoom5" / path.name
        scores = [json.loads(path.read_text())]
        scores += [json.loads(zoomed.read_text())] if zoomed.is_file() else []
        cells = [f"{d[k]:.3f}" for d in scores for k in KEYS] + ["–"] * (3 * (2 - len(scores)))
        print(f"| {name} | {path.stem.rsplit('-', 1)[1]} | " + " | ".join(cells) + " |")
PY
