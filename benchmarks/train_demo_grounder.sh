#!/usr/bin/env bash
# Trains the embedded demo grounder (composeseg/assets/demo_grounder) and installs it.
#
#   benchmarks/train_demo_grounder.sh [OUTDIR]     # default OUTDIR: /work/demogrounder
#
# A tiny transformers OWL-ViT (4-layer ViT on 256 px images in 16 px patches, 2-layer text
# transformer, the demo text model's word-level tokenizer) learns to box generated objects named
# by captions, with OWL-ViT's Hungarian-matched focal + L1 + GIoU loss plus a dense box term, on
# scenes generated on the fly (seeds 6e8+); the best validation checkpoint is kept. Two torch
# threads; ~32 min on a shared 2-core machine. Every random choice comes from --seed, so a rerun
# gives a model of the same quality.
set -euo pipefail
OUT="${1:-/work/demogrounder}"
PYTHON="${PYTHON:-python}"
"$PYTHON" -W ignore -m composeseg.train.grounder -o "$OUT" --steps 3000 --lr 5e-4 --seed 0 --threads 2
DEST="$(dirname "$0")/../composeseg/assets/demo_grounder"
rm -rf "$DEST" && cp -r "$OUT/model" "$DEST" && chmod 644 "$DEST"/*
echo "installed $(du -sh "$DEST" | cut -f1) at $DEST"
