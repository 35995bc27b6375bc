"""``export_onnx``: a SAM-family model as ONNX graphs, checked against torch before it is kept.

An export directory holds

- ``encoder.onnx``: ``pixel_values (B, 3, S, S)`` float32, the normalised and padded image in
  the model's input frame -> ``image_embeddings (B, D, S/16, S/16)`` plus the family's extra
  features (SAM-HQ: ``intermediate_embeddings``; SAM 2: ``high_res_feats_0/1``). Resize,
  normalisation and padding stay outside the graph (:func:`composeseg.transforms.preprocess`,
  written out in ``composeseg.json``), as in Meta's predictor;
- ``decoder.onnx``: the encoder's outputs (batch 1) + ``point_coords (N, P, 2)``,
  ``point_labels (N, P) int64``, ``mask_input (N, 1, M, M)``, ``has_mask_input (1,)``,
  ``multimask_output (1,) bool``, ``orig_im_size (2,) int64`` -> ``masks (N, K, H, W) bool``,
  ``iou_predictions (N, K)``, ``low_res_masks (N, K, M, M)`` (K = 3 with multimask, else 1);
  N objects and P points are dynamic (:mod:`composeseg.onnx_graphs`);
- ``decoder_meta.onnx`` (SAM, SlimSAM): Meta's ``SamOnnxModel`` signature, for tools written
  for Meta's exported decoder (:class:`~composeseg.onnx_graphs.MetaSignatureDecoder`);
- ``composeseg.json``: family, input frame, normalisation, versions, and the checks below.

Before the files are moved into place, the export runs generated scenes through the ONNX
Runtime model and the torch model with the same prompts and records the largest logit and
score differences and the mean mask IoU; ``quantize="int8"`` (onnxruntime's dynamic
quantization of the weights, Meta's settings) and ``fp16`` record their mask IoU against fp32.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from composeseg.sam import Sam

SUPPORTED_FAMILIES: dict[str, str] = {
    "sam": "SAM, SlimSAM and the demo model (transformers SamModel)",
    "sam_hq": "SAM-HQ (SamHQModel)",
    "sam2": "SAM 2 / 2.1 on images (Sam2Model)",
}
DEFAULT_OPSET = 18
EXTERNAL_DATA_BYTES = 1_800_000_000
"""Above this many parameter bytes a graph's weights go to ``NAME.onnx.data`` (protobuf files
stop at 2 GB): ViT-H's encoder (2.5 GB)."""
QUANTIZE_CHOICES = ("int8",)
PROMPT_INPUTS = (
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
    "multimask_output",
    "orig_im_size",
)
"""``decoder.onnx``'s inputs after the encoder's outputs."""
META_INPUTS = (
    "image_embeddings",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
    "orig_im_size",
)
"""``decoder_meta.onnx``'s inputs, Meta's names and order."""
DECODER_OUTPUTS = ("masks", "iou_predictions", "low_res_masks")


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_onnx` wrote.

    Attributes:
        directory: the export directory (``load_sam(directory)`` runs it).
        files: role -> path ("encoder", "decoder", "decoder_meta", "manifest", data files).
        sizes: role -> bytes.
        checks: measured before the files were kept: ``max_logit_diff`` / ``max_score_diff``
            / ``mask_iou`` of ONNX Runtime fp32 against torch; ``int8_mask_iou`` /
            ``fp16_mask_iou`` of the reduced precision against fp32.
    """

    directory: Path
    files: dict[str, Path]
    sizes: dict[str, int]
    checks: dict[str, float]

    def __str__(self) -> str:
        lines = [f"ONNX export in {self.directory}:"]
        lines += [f"  {self.files[r].name:<24} {self.sizes[r] / 2**20:9.2f} MB" for r in self.sizes]
        lines += [f"  {name}: {value:.6g}" for name, value in self.checks.items()]
        return "\n".join(lines)


def export_onnx(
    sam: Sam | str | os.PathLike | None,
    directory: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    quantize: str | None = None,
    fp16: bool = False,
    return_single_mask: bool = False,
    use_stability_score: bool = False,
    check_scenes: int = 3,
) -> ExportReport:
    """Export a SAM-family model to ONNX (see the module docstring for the files).

    Args:
        sam: a loaded :class:`~composeseg.Sam`, or a source for :func:`composeseg.load_sam`
            (None: the demo model). With ``quantize`` or ``fp16`` it may also be an fp32
            export (its directory), which is then converted without torch.
        directory: where to write; created if needed. Files of an earlier export there are
            replaced; the manifest is written last, so an interrupted export is not loadable.
        opset: ONNX opset (>= 17; the dynamo exporter's native range starts at 18).
        quantize: "int8": onnxruntime's dynamic quantization (uint8 weights, per tensor) of
            every graph, Meta's settings; at ViT-B size 3.3x smaller files and a 1.2x faster
            encoder on a CPU with VNNI (``benchmarks/bench_onnx.py``).
        fp16: convert the graphs' weights and arithmetic to float16 (inputs and outputs stay
            float32); for GPU and WebGPU runtimes.
        return_single_mask, use_stability_score: Meta's options for ``decoder_meta.onnx``
            (:class:`~composeseg.onnx_graphs.MetaSignatureDecoder`).
        check_scenes: generated scenes run through both runtimes before the files are kept.

    A model with ``upsampling="learned"`` exports with guided upsampling: its learned mask
    refiner (:mod:`composeseg.refiner`) is not part of the graphs.

    Raises:
        ValueError: an unsupported family (names the supported ones), an ONNX export as
            input, bad options, or a directory that holds a transformers model.
        MissingExtraError: onnx, onnxruntime or onnxscript is missing (names the extra).
    """
    from composeseg.backends.onnx import EXTRA, OnnxManifest
    from composeseg.extras import require
    from composeseg.onnx_checks import check_against_torch, compare_precision

    for module in ("onnx", "onnxruntime", "onnxscript"):
        require(module, extra=EXTRA, purpose="ONNX export")
    if quantize not in (None, *QUANTIZE_CHOICES):
        raise ValueError(f"quantize must be one of {QUANTIZE_CHOICES} or None, got {quantize!r}")
    if quantize and fp16:
        raise ValueError("choose one of quantize='int8' and fp16")
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 17:
        raise ValueError(f"opset must be an int >= 17, got {opset!r}")
    if check_scenes < 1:
        raise ValueError(f"check_scenes must be >= 1, got {check_scenes}")
    out = Path(directory).expanduser()
    if (out / "config.json").is_file():
        raise ValueError(f"{out} holds a transformers model (config.json); export elsewhere")
    from composeseg.io import check_output_folder

    check_output_folder(out)  # before the model loads and exports (minutes at ViT-B)
    precision = "int8" if quantize else "fp16" if fp16 else "fp32"
    fp32_export = _onnx_export_source(sam)
    if fp32_export is not None and precision == "fp32":
        raise ValueError(
            f"{fp32_export} is already an ONNX export; export the torch model, or pass "
            "quantize='int8' / fp16=True to make a reduced-precision copy of it"
        )
    out.mkdir(parents=True, exist_ok=True)
    stages: list[Path] = []
    try:
        if fp32_export is None:
            reference = _as_torch_sam(sam)
            stages.append(Path(tempfile.mkdtemp(prefix=".export-", dir=out)))
            manifest = _export_fp32(
                reference, stages[-1], opset, return_single_mask, use_stability_score
            )
            _write_manifest(manifest, stages[-1])
            checks = check_against_torch(reference, stages[-1], seeds=range(check_scenes))
            fp32_export = stages[-1]
        else:
            manifest = OnnxManifest.read(fp32_export)
            if manifest.precision != "fp32":
                raise ValueError(f"{fp32_export} is a {manifest.precision} export; start from fp32")
            checks = dict(manifest.checks)
        if precision != "fp32":
            stages.append(Path(tempfile.mkdtemp(prefix=".export-", dir=out)))
            manifest = _reduce_precision(manifest, fp32_export, stages[-1], precision)
            _write_manifest(manifest, stages[-1])
            checks[f"{precision}_mask_iou"] = compare_precision(
                fp32_export, stages[-1], seeds=range(check_scenes)
            )
        manifest = OnnxManifest(**{**manifest.__dict__, "checks": checks})
        files = _publish(manifest, stages[-1], out)
    finally:
        for stage in stages:
            shutil.rmtree(stage, ignore_errors=True)
    sizes = {role: path.stat().st_size for role, path in files.items()}
    return ExportReport(directory=out, files=files, sizes=sizes, checks=checks)


def _publish(manifest: Any, staging: Path, out: Path) -> dict[str, Path]:
    """Move the staged files into ``out``, the manifest last, so that a directory with a
    manifest always holds a complete export."""
    from composeseg.backends.onnx import MANIFEST

    _write_manifest(manifest, staging)
    files = {role: out / name for role, name in manifest.files.items()}
    (out / MANIFEST).unlink(missing_ok=True)
    for role, name in manifest.files.items():
        os.replace(staging / name, files[role])
    os.replace(staging / MANIFEST, out / MANIFEST)
    return {**files, "manifest": out / MANIFEST}


def _onnx_export_source(sam: object) -> Path | None:
    """The directory when ``sam`` names an ONNX export, else None."""
    from composeseg.backends.onnx import MANIFEST, OnnxBackend
    from composeseg.sam import Sam

    if isinstance(sam, Sam) and isinstance(sam.backend, OnnxBackend):
        return sam.backend.sessions.directory
    if isinstance(sam, (str, os.PathLike)):
        path = Path(os.fspath(sam)).expanduser()
        if (path / MANIFEST).is_file():
            return path
    return None


def _unsupported(what: str) -> ValueError:
    supported = "; ".join(f"{k}: {v}" for k, v in SUPPORTED_FAMILIES.items())
    return ValueError(f"ONNX export does not support {what} yet (supported: {supported})")


def _as_torch_sam(sam: object) -> Sam:
    """The model to export, on the CPU in float32 (a copy when it lives elsewhere), drawing the
    masks its export will draw: guided where it draws learned ones, since the learned mask
    refiner is a torch module outside the graphs (the export's checks compare against these)."""
    import torch

    from composeseg.loading import load_sam, read_model_type
    from composeseg.sam import Sam

    if sam is None or isinstance(sam, (str, os.PathLike)):
        path = None if sam is None else Path(os.fspath(sam)).expanduser()
        if path is not None and (path / "config.json").is_file():
            model_type = read_model_type(path)
            if model_type not in (*SUPPORTED_FAMILIES, "sam2_video"):
                raise _unsupported(f"model_type {model_type!r} ({path})")
        sam = load_sam(sam, device="cpu")
    if not isinstance(sam, Sam):
        raise _unsupported(f"{type(sam).__name__} objects")
    if sam.family not in SUPPORTED_FAMILIES:
        raise _unsupported(f"the {sam.family!r} family")
    upsampling = "guided" if sam.upsampling == "learned" else sam.upsampling
    if sam.device.type == "cpu" and sam.dtype == torch.float32:
        if upsampling == sam.upsampling:
            return sam
        return Sam(sam.backend, device=sam.device, name=sam.name, upsampling=upsampling)
    model = copy.deepcopy(sam.model).to("cpu", torch.float32).eval()
    backend = type(sam.backend)(model)
    if hasattr(sam.backend, "hq_token_only"):
        backend.hq_token_only = sam.backend.hq_token_only  # type: ignore[attr-defined]
    return Sam(backend, device=torch.device("cpu"), name=sam.name, upsampling=upsampling)


def _export_fp32(
    sam: Sam, staging: Path, opset: int, return_single_mask: bool, use_stability_score: bool
) -> Any:
    """Write the fp32 graphs into ``staging``; returns their :class:`OnnxManifest`."""
    import onnx
    import onnxruntime
    import onnxscript
    import torch
    import transformers

    from composeseg import onnx_graphs as graphs
    from composeseg._version import __version__
    from composeseg.backends.onnx import FEATURE_NAMES, OnnxManifest

    backend, family = sam.backend, sam.family
    model = _as_transformers_built(sam.model)
    size = sam.image_size
    mask_size = backend.mask_size
    names = FEATURE_NAMES[family]
    hq_token_only = bool(getattr(backend, "hq_token_only", False))
    if family == "sam_hq" and not model.config.vision_config.global_attn_indexes:
        raise ValueError("SAM-HQ export needs a vision config with global attention blocks")
    encoder = {"sam": graphs.SamEncoder, "sam_hq": graphs.SamHQEncoder, "sam2": graphs.Sam2Encoder}
    decoder: torch.nn.Module
    if family == "sam":
        decoder = graphs.SamDecoder(model, size, backend.resize_mode)
    elif family == "sam_hq":
        decoder = graphs.SamHQDecoder(model, size, backend.resize_mode, hq_token_only=hq_token_only)
    else:
        decoder = graphs.Sam2Decoder(model, size, backend.resize_mode)
    with torch.no_grad():
        features = backend.encode(torch.zeros(1, 3, size, size))
    files = {"encoder": "encoder.onnx", "decoder": "decoder.onnx"}
    batch = torch.export.Dim("batch", min=1, max=1024)
    _export(
        encoder[family](model).eval(),
        (torch.randn(2, 3, size, size),),
        staging / files["encoder"],
        input_names=["pixel_values"],
        output_names=list(names),
        dynamic_shapes=({0: batch},),
        opset=opset,
    )
    objects = torch.export.Dim("num_objects", min=1, max=65536)
    points = torch.export.Dim("num_points", min=0, max=65536)
    prompt_shapes = ({0: objects, 1: points}, {0: objects, 1: points}, {0: objects})
    _export(
        decoder.eval(),
        (
            *features,
            torch.rand(3, 4, 2) * size,
            torch.tensor([[1, 0, 2, 3]] * 3),
            torch.zeros(3, 1, mask_size, mask_size),
            torch.zeros(1),
            torch.tensor([True]),
            torch.tensor([size, size]),
        ),
        staging / files["decoder"],
        input_names=[*names, *PROMPT_INPUTS],
        output_names=list(DECODER_OUTPUTS),
        dynamic_shapes=(*(None for _ in names), *prompt_shapes, None, None, None),
        opset=opset,
    )
    if family == "sam":
        files["decoder_meta"] = "decoder_meta.onnx"
        meta = graphs.MetaSignatureDecoder(
            model,
            size,
            return_single_mask=return_single_mask,
            use_stability_score=use_stability_score,
        )
        _export(
            meta.eval(),
            (
                features[0],
                torch.rand(1, 5, 2) * size,
                torch.tensor([[1.0, 0.0, 2.0, 3.0, -1.0]]),
                torch.zeros(1, 1, mask_size, mask_size),
                torch.ones(1),
                torch.tensor([size * 1.5, size * 2.0]),
            ),
            staging / files["decoder_meta"],
            input_names=list(META_INPUTS),
            output_names=list(DECODER_OUTPUTS),
            dynamic_shapes=(None, {1: points}, {1: points}, None, None, None),
            opset=opset,
        )
    files = _with_weight_files(files, staging)
    return OnnxManifest(
        family=family,
        name=sam.name,
        image_size=size,
        mask_size=mask_size,
        resize_mode=backend.resize_mode,
        pixel_mean=backend.pixel_mean,
        pixel_std=backend.pixel_std,
        trailing_pad=family == "sam2",
        precision="fp32",
        files=files,
        opset=opset,
        upsampling=sam.upsampling,  # never "learned": see _as_torch_sam
        versions={
            "composeseg": __version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "onnxscript": onnxscript.__version__,
        },
        options={
            "hq_token_only": hq_token_only,
            "meta_return_single_mask": return_single_mask,
            "meta_use_stability_score": use_stability_score,
        },
    )


def _as_transformers_built(model: Any) -> Any:
    """``model`` as transformers builds it, sharing its weights (nothing is copied).

    ``load_sam`` swaps the ViT layers for composeseg's lean attention
    (:mod:`composeseg.backends.attention`), whose chunk loops are sized by the batch: traced,
    they would fix the encoder's batch size, where transformers' layers give a dynamic batch
    and the standard attention ops that other runtimes optimise. Same arithmetic either way.
    """
    import torch

    if not any(type(m).__module__.startswith("composeseg.") for m in model.modules()):
        return model
    with torch.device("meta"):  # no init of weights that are replaced at once
        built = type(model)(model.config)
    built.load_state_dict(model.state_dict(), assign=True)
    return built.eval()


def _export(
    module: Any,
    args: tuple[Any, ...],
    path: Path,
    *,
    input_names: list[str],
    output_names: list[str],
    dynamic_shapes: tuple[Any, ...],
    opset: int,
) -> None:
    """``torch.onnx.export`` with the dynamo exporter, one file unless the weights need more."""
    import io

    import torch

    weights = sum(p.numel() * p.element_size() for p in module.parameters())
    # the exporter prints its progress and warns about axis names it merges; neither is news
    with (
        contextlib.redirect_stdout(io.StringIO()),
        warnings.catch_warnings(),
        torch.no_grad(),
    ):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=True,
            external_data=weights > EXTERNAL_DATA_BYTES,
            input_names=input_names,
            output_names=output_names,
            dynamic_shapes=dynamic_shapes,
            opset_version=opset,
            verbose=False,
        )


def _reduce_precision(manifest: Any, source: Path, target: Path, precision: str) -> Any:
    """Write int8 (dynamic quantization) or fp16 copies of ``source``'s graphs to ``target``."""
    import onnx

    from composeseg.backends.onnx import OnnxManifest

    files = {}
    for role, name in manifest.files.items():
        if role.startswith("weights_"):
            continue
        large = (source / f"{name}.data").is_file()
        if precision == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            # the quantizer logs advice and type-inference notes on the root logger
            with warnings.catch_warnings(), _root_logging_disabled():
                warnings.simplefilter("ignore")
                quantize_dynamic(
                    source / name,
                    target / name,
                    per_channel=False,
                    reduce_range=False,
                    weight_type=QuantType.QUInt8,
                    use_external_data_format=large,
                )
        else:
            from onnxruntime.transformers.float16 import convert_float_to_float16

            half = convert_float_to_float16(onnx.load(str(source / name)), keep_io_types=True)
            onnx.save_model(half, str(target / name), save_as_external_data=large)
        files[role] = name
    files = _with_weight_files(files, target)
    return OnnxManifest(**{**manifest.__dict__, "files": files, "precision": precision})


def _with_weight_files(graphs: dict[str, str], staging: Path) -> dict[str, str]:
    """``graphs`` plus every other file the writers left in ``staging``: external weights
    (``encoder.onnx.data`` for ViT-H), listed so that they are moved and checked with it."""
    named = set(graphs.values())
    extra = sorted(p.name for p in staging.iterdir() if p.is_file() and p.name not in named)
    return {**graphs, **{f"weights_{i}": name for i, name in enumerate(extra)}}


@contextlib.contextmanager
def _root_logging_disabled() -> Iterator[None]:
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _write_manifest(manifest: Any, directory: Path) -> None:
    from composeseg.backends.onnx import MANIFEST
    from composeseg.io import write_json

    write_json(directory / MANIFEST, manifest.to_json())
