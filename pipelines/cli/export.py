"""``composeseg export onnx``: a model as ONNX graphs for onnxruntime, checked against torch.

``composeseg export`` is a group, one subcommand per format, so that later formats (TensorRT
engines, Core ML) get their own options without crowding ONNX's.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from composeseg.onnx_export import DEFAULT_OPSET, QUANTIZE_CHOICES


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("export", help="export a model for deployment (ONNX)")
    formats = parser.add_subparsers(dest="export_format", metavar="FORMAT")
    onnx = formats.add_parser(
        "onnx",
        help="encoder.onnx + decoder.onnx (+ Meta's decoder signature) + composeseg.json",
        description=(
            "Export SAM, SlimSAM, SAM-HQ or SAM 2 to ONNX. The export is checked against torch "
            "on generated scenes before it is kept; load_sam(DIR) runs it with onnxruntime "
            '(pip install "composeseg[onnx]").'
        ),
    )
    onnx.add_argument(
        "--sam",
        metavar="SOURCE",
        default=None,
        help="hub id, save_pretrained directory or Meta .pth (default: the demo model); with "
        "--quantize or --fp16 also an fp32 export directory",
    )
    onnx.add_argument("-o", "--output", type=Path, required=True, metavar="DIR")
    onnx.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (>= 17)")
    onnx.add_argument(
        "--quantize",
        choices=QUANTIZE_CHOICES,
        default=None,
        help="onnxruntime dynamic quantization of the weights (reports mask IoU against fp32)",
    )
    onnx.add_argument(
        "--fp16", action="store_true", help="float16 weights and arithmetic (float32 I/O)"
    )
    onnx.add_argument(
        "--meta-single-mask",
        action="store_true",
        help="decoder_meta.onnx returns one mask (Meta's --return-single-mask)",
    )
    onnx.add_argument(
        "--meta-stability-score",
        action="store_true",
        help="decoder_meta.onnx scores masks by stability (Meta's --use-stability-score)",
    )
    onnx.add_argument(
        "--check-scenes",
        type=int,
        default=3,
        metavar="N",
        help="generated scenes compared against torch (and fp32) before the files are kept",
    )
    onnx.set_defaults(handler=_export_onnx)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)


def _export_onnx(args: argparse.Namespace) -> int:
    from composeseg.onnx_export import export_onnx

    report = export_onnx(
        args.sam,
        args.output,
        opset=args.opset,
        quantize=args.quantize,
        fp16=args.fp16,
        return_single_mask=args.meta_single_mask,
        use_stability_score=args.meta_stability_score,
        check_scenes=args.check_scenes,
    )
    print(report)
    return 0
