"""``composeseg train``: train or fine-tune a SAM model on a COCO-format folder or on
generated scenes, with the SAM paper's prompt simulation. Output loads with ``load_sam``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from composeseg.train.config import TrainConfig

_DEFAULTS = TrainConfig()


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train / fine-tune SAM on a COCO folder or synthetic scenes",
        description=(
            "Trains with boxes / points, interactive corrective points and mask feedback, "
            "focal + dice (20:1) on the best of the multimask outputs and MSE on the IoU head. "
            "Writes OUTDIR/checkpoint.pt, OUTDIR/model/ and OUTDIR/best/ (load them with "
            "--sam DIR); --resume continues an interrupted run exactly."
        ),
    )
    data = parser.add_argument_group("data (one of --data/--images or --synthetic)")
    data.add_argument("--data", type=Path, metavar="COCO.json", help="COCO instance annotations")
    data.add_argument("--images", type=Path, metavar="DIR", help="image directory of --data")
    data.add_argument(
        "--holdout",
        type=int,
        default=0,
        help="last N images of --data kept for validation (0: validate on training images)",
    )
    data.add_argument(
        "--synthetic", action="store_true", help="train on generated scenes (seeds < 9e8)"
    )
    data.add_argument(
        "--randomized",
        type=float,
        default=0.0,
        metavar="P",
        help="share of --synthetic scenes drawn from the domain-randomised family "
        "(composeseg.synthetic.randomized: wider shapes, looks and camera effects)",
    )
    data.add_argument(
        "--dense-layouts",
        action="store_true",
        help="with --randomized: crowded randomised scenes (up to 14 objects, 55 %% of them on "
        "or inside another; composeseg.synthetic.randomized.DENSE_LAYOUT)",
    )
    model = parser.add_argument_group("model")
    model.add_argument(
        "--init", metavar="SOURCE", help="start from any model load_sam loads (fine-tuning)"
    )
    model.add_argument(
        "--model-config",
        default="demo",
        metavar="PRESET",
        help="architecture when training from scratch: demo (default) or tiny",
    )
    model.add_argument(
        "--freeze-image-encoder",
        action="store_true",
        help="train prompt encoder + decoder only, on cached image embeddings (fast)",
    )
    model.add_argument(
        "--image-size",
        type=int,
        default=0,
        metavar="PX",
        help="input frame in pixels (default: the model's); position embeddings are resampled",
    )
    model.add_argument(
        "--add-encoder-layers",
        type=int,
        default=0,
        metavar="N",
        help="with --init: append N image-encoder blocks that start as identities "
        "(composeseg.train.grow), so fine-tuning starts from the model's own quality",
    )
    model.add_argument(
        "--add-decoder-layers",
        type=int,
        default=0,
        metavar="N",
        help="with --init: append N two-way blocks to the mask decoder that start close to "
        "identities (composeseg.train.grow)",
    )
    model.add_argument(
        "--decoder-width",
        type=int,
        default=0,
        metavar="C",
        help="with --init: keep its image-encoder blocks and start a new neck, prompt encoder "
        "and mask decoder with C channels (composeseg.train.grow); from scratch: the "
        "preset's with C decoder channels",
    )
    model.add_argument(
        "--patch-size",
        type=int,
        default=0,
        metavar="P",
        help="from scratch: image-encoder patches of P px instead of the preset's 16 (8: four "
        "times the tokens, for small objects)",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR")
    parser.add_argument("--resume", action="store_true", help="continue OUTDIR/checkpoint.pt")
    parser.add_argument(
        "--stop-after",
        type=int,
        metavar="N",
        help="stop once N steps are done, the lr schedule still spanning --steps; OUTDIR/model "
        "then holds step N and --resume continues the run",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--device", default=None, help="cuda, mps or cpu (default: cuda if available, else cpu)"
    )
    hyper = parser.add_argument_group("hyper-parameters")
    for name, kind, help_text in (
        ("steps", int, "optimiser steps in total"),
        ("batch_images", int, "images per step"),
        ("prompts_per_image", int, "objects per image per step"),
        ("interactive_rounds", int, "corrective-point rounds after the first prompt"),
        ("lr", float, "peak learning rate (AdamW)"),
        ("weight_decay", float, "AdamW weight decay"),
        ("warmup_steps", int, "linear warm-up steps"),
        ("val_every", int, "steps between validations"),
        ("val_images", int, "validation images"),
        ("checkpoint_every", int, "steps between checkpoints"),
        ("seed", int, "seed of data, prompts and initial weights"),
        ("threads", int, "torch threads (0: torch default)"),
        ("data_workers", int, "processes building the next batches (0: none; same run)"),
    ):
        field = "num_threads" if name == "threads" else name
        hyper.add_argument(
            f"--{name.replace('_', '-')}",
            dest=field,
            type=kind,
            default=getattr(_DEFAULTS, field),
            help=f"{help_text} (default {getattr(_DEFAULTS, field)})",
        )
    hyper.add_argument("--no-augment", action="store_true", help="no random crops")
    hyper.add_argument(
        "--zoom-crops",
        type=float,
        default=_DEFAULTS.zoom_crops,
        metavar="SHARE",
        help="share of training images replaced by a window around one object, 3-8 times its "
        "size, as zoomed prompting (--zoom) sees it (default 0)",
    )
    hyper.add_argument(
        "--save-dtype", choices=("float32", "float16"), default="float32", help="exported weights"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from composeseg.io import check_output_folder
    from composeseg.synthetic.randomized import DENSE_LAYOUT
    from composeseg.train.data import CocoSource, SyntheticSource
    from composeseg.train.loop import train
    from composeseg.train.model import build_model_for_training, check_trainable, model_preset

    check_output_folder(args.output)  # before any data or model is built
    if args.synthetic == bool(args.data or args.images):
        raise ValueError("give either --synthetic or both --data COCO.json and --images DIR")
    if not args.synthetic and not (args.data and args.images):
        raise ValueError("--data and --images go together")
    if args.randomized and not args.synthetic:
        raise ValueError("--randomized applies to --synthetic scenes only")
    if args.dense_layouts and not args.randomized:
        raise ValueError("--dense-layouts applies to --randomized scenes only")
    config = TrainConfig(
        steps=args.steps,
        batch_images=args.batch_images,
        prompts_per_image=args.prompts_per_image,
        interactive_rounds=args.interactive_rounds,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        freeze_image_encoder=args.freeze_image_encoder,
        augment=not args.no_augment,
        zoom_crops=args.zoom_crops,
        val_every=args.val_every,
        val_images=args.val_images,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        num_threads=args.num_threads,
        data_workers=args.data_workers,
        save_dtype=args.save_dtype,
    )
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    source: Any = (
        SyntheticSource(
            randomized=args.randomized,
            randomized_config=DENSE_LAYOUT if args.dense_layouts else None,
        )
        if args.synthetic
        else CocoSource(args.data, args.images, args.holdout)
    )
    if args.add_encoder_layers and not args.init:
        raise ValueError("--add-encoder-layers needs --init (a trained model to deepen)")
    if args.add_decoder_layers and not args.init:
        raise ValueError("--add-decoder-layers needs --init (a trained model to deepen)")
    if args.patch_size and args.init:
        raise ValueError(
            "--patch-size builds a model from scratch; a trained patch embedding does not "
            "convert to another patch size (drop --init)"
        )
    if args.init:
        from composeseg.loading import load_sam

        model = check_trainable(load_sam(args.init, device="cpu").model)
    else:
        preset = model_preset(args.model_config, patch_size=args.patch_size or None)
        model = build_model_for_training(preset, seed=config.seed)
    if args.image_size:
        from composeseg.train.resize import resize_input

        model = resize_input(model, args.image_size)
    if args.add_encoder_layers:
        from composeseg.train.grow import deepen_encoder

        model = deepen_encoder(model, args.add_encoder_layers, seed=config.seed)
    if args.decoder_width:
        from composeseg.train.grow import rebuild_decoder

        model = rebuild_decoder(model, args.decoder_width, seed=config.seed)
    if args.add_decoder_layers:
        from composeseg.train.grow import deepen_decoder

        model = deepen_decoder(model, args.add_decoder_layers, seed=config.seed)
    from composeseg.device import pick_device

    device = str(pick_device(args.device))
    model.to(torch.device(device))  # type: ignore[arg-type]
    result = train(
        model,
        source,
        config,
        args.output,
        resume=args.resume,
        stop_after=args.stop_after,
        progress=not args.no_progress,
    )
    print(f"trained {result.step} steps; model: {result.model_dir}")
    if result.best_dir is not None:
        print(f"best validation box mIoU: {result.best_dir}")
    return 0
