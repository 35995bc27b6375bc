#!/usr/bin/env bash
# The image-encoder benchmark on one GPU, in a few minutes (sized for an H100 / H200):
# ViT-B and ViT-H (random weights in Meta's format) at batch 1 / 8 / 16, in float32, bfloat16
# and bfloat16 + torch.compile, against Meta's SamPredictor and transformers' SamModel; images
# per second, % of the GPU's dense bf16 peak (FLOPs per image printed first), peak GPU memory;
# then AMG end to end against Meta's SamAutomaticMaskGenerator.
#
#   bash benchmarks/bench_encoder_gpu.sh                  # from a source checkout
#   bash benchmarks/bench_encoder_gpu.sh --device cpu --tiny --batches 1 2 --repeat 1   # dry run
#
# Extra arguments go to bench_encoder.py (they override the defaults below). Installs only
# what is missing (composeseg from this checkout, segment-anything), so it also runs offline on
# a machine that has them.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}

"$PYTHON" -c "import composeseg, transformers" 2>/dev/null || "$PYTHON" -m pip install -q -e .
"$PYTHON" -c "import segment_anything" 2>/dev/null || "$PYTHON" -m pip install -q segment-anything
"$PYTHON" -c "import pycocotools" 2>/dev/null || "$PYTHON" -m pip install -q pycocotools
"$PYTHON" - <<'EOF'
import torch
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(), "| torch", torch.__version__, "| CUDA", torch.version.cuda)
else:
    print("no CUDA device: pass --device cpu for a dry run")
EOF

exec "$PYTHON" benchmarks/bench_encoder.py \
    --device cuda --models vit_b vit_h --batches 1 8 16 --repeat 2 --amg \
    --options meta transformers transformers-bf16 today lean lean-bf16 lean-bf16-compile \
    "$@"
