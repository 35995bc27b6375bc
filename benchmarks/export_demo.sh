#!/usr/bin/env bash
# Exports a trained model into the package as the embedded demo model, then measures it.
#
#   benchmarks/export_demo.sh [MODEL_DIR]     # default: /work/demo_train-blend
#
# MODEL_DIR is a save_pretrained directory written by `composeseg train` (OUTDIR/model holds the
# last step's weights, OUTDIR/best the best validation box mIoU's; validation seeds are in
# [9e8, 1e9)); any other saved model works too, such as train_demo.sh's stage 6 blend, the
# shipped weights. The weights are stored in float16 (load_sam loads them back in float32)
# into composeseg/assets/demo_sam, then scored on 40 scenes from the evaluation seeds (>= 1e9)
# and on 40 scenes of the independent family's test split, as tests/quality does.
set -euo pipefail
SRC="${1:-/work/demo_train-blend}"
PYTHON="${PYTHON:-python}"
"$PYTHON" - "$SRC" <<'PY'
import sys

from composeseg.loading import DEMO_MODEL_DIR, load_sam
from composeseg.train.loop import export_model

model = load_sam(sys.argv[1], device="cpu").model
# the demo SAM's masks are drawn with guided upsampling unless a caller asks otherwise
model.config.composeseg_upsampling = "guided"
export_model(model, DEMO_MODEL_DIR, "float16")
size = sum(f.stat().st_size for f in DEMO_MODEL_DIR.iterdir())
print(f"exported {sys.argv[1]} -> {DEMO_MODEL_DIR} ({size / 2**20:.2f} MiB)")
PY
"$PYTHON" -m composeseg.pipelines.cli eval points --synthetic 40 --device cpu
"$PYTHON" -m composeseg.pipelines.cli eval points --synthetic 40 --family independent --device cpu
