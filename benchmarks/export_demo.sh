#!/usr/bin/env bash
# Exports a trained model into the package as the embedded demo model, then measures it.
#
#   benchmarks/export_demo.sh [MODEL_DIR]     # default: /work/demo_train-refined
#
# MODEL_DIR is a save_pretrained directory written by `composeseg train` (OUTDIR/model holds the
# last step's weights, OUTDIR/best the best validation box mIoU's; validation seeds are in
# [9e8, 1e9)); any other saved model works too, such as train_demo.sh's stage 7 (stage 6's
# weights with a learned mask refiner), the shipped model. The weights are stored in float16
# (load_sam loads them back in float32) into composeseg/assets/demo_sam with the model's mask
# refiner if it has one (then its masks are drawn "learned", else "guided"), then scored on 40
# scenes from the evaluation seeds (>= 1e9) and on 40 scenes of the independent family's test
# split, as tests/quality does.
set -euo pipefail
SRC="${1:-/work/demo_train-refined}"
PYTHON="${PYTHON:-python}"
"$PYTHON" - "$SRC" <<'PY'
import sys

from composeseg.loading import DEMO_MODEL_DIR, UPSAMPLING_KEY, load_sam
from composeseg.train.loop import export_model

sam = load_sam(sys.argv[1], device="cpu")
model = sam.model
# the demo SAM's masks follow the image's edges unless a caller asks otherwise; with a refiner
# export_model names "learned"
setattr(model.config, UPSAMPLING_KEY, "guided")
export_model(model, DEMO_MODEL_DIR, "float16", refiner=sam.refiner)
size = sum(f.stat().st_size for f in DEMO_MODEL_DIR.iterdir())
print(f"exported {sys.argv[1]} -> {DEMO_MODEL_DIR} ({size / 2**20:.2f} MiB)")
PY
"$PYTHON" -m composeseg.pipelines.cli eval points --synthetic 40 --device cpu
"$PYTHON" -m composeseg.pipelines.cli eval points --synthetic 40 --family independent --device cpu
