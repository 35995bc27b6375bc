#!/usr/bin/env bash
# Trains the embedded demo text model (composeseg/assets/demo_clip) and installs it.
#
#   benchmarks/train_demo_clip.sh [OUTDIR]        # default OUTDIR: /work/democlip
#
# A tiny transformers CLIPModel (4-layer ViT on 64 px crops, 2-layer text transformer, word-level
# tokenizer) learns colour/kind/size captions of generated objects (scenes 5e8..5e8+1500), with
# background patches, object halves and object pairs as negatives. One torch thread; ~25 min on
# a shared 2-core machine. Every random choice comes from --seed, so a rerun gives the same model.
set -euo pipefail
OUT="${1:-/work/democlip}"
PYTHON="${PYTHON:-python}"
"$PYTHON" -W ignore -m composeseg.train.clip -o "$OUT" --steps 1200 --scenes 1500 --batch 128 --seed 0
DEST="$(dirname "$0")/../composeseg/assets/demo_clip"
rm -rf "$DEST" && cp -r "$OUT/model" "$DEST"
echo "installed $(du -sh "$DEST" | cut -f1) at $DEST"
