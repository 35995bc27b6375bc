"""ONNX Runtime behind the :class:`~composeseg.Sam` API: a directory written by
:func:`composeseg.export_onnx` runs with ``load_sam(DIR)``.

The export's ``composeseg.json`` (:class:`OnnxManifest`) says which family it is and in which
frame its encoder works; :class:`OnnxBackend` then does what the torch backends do, with the
encoder and decoder graphs run by onnxruntime on numpy arrays. Resize, normalisation and
padding stay in :func:`composeseg.transforms.preprocess`, as for the torch models, so every
pipeline runs unchanged on an export. ``onnxruntime`` and ``onnx`` come with
``pip install "composeseg[onnx]"``.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from composeseg.backends.base import Backend, DecoderPrompts
from composeseg.loading import ONNX_MANIFEST as MANIFEST
from composeseg.transforms import ResizeMode

if TYPE_CHECKING:
    from composeseg.sam import Sam
    from composeseg.upsampling import Upsampling

FORMAT = "composeseg-onnx"
FORMAT_VERSION = 1
EXTRA = "onnx"

FEATURE_NAMES: dict[str, tuple[str, ...]] = {
    "sam": ("image_embeddings",),
    "sam_hq": ("image_embeddings", "intermediate_embeddings"),
    "sam2": ("image_embeddings", "high_res_feats_0", "high_res_feats_1"),
}
"""The encoder's outputs per family, in :class:`~composeseg.ImageEmbedding` order; the decoder
takes them under the same names."""

BOX_TOP_LEFT, BOX_BOTTOM_RIGHT, NOT_A_POINT = 2, 3, -1
"""SAM's internal point labels for box corners and padding (see :func:`sam_point_prompts`)."""


PREPROCESS: dict[str, str] = {
    "longest": "RGB uint8 (H, W, 3) -> resize the longest side to image_size, the other to "
    "int(side * image_size / longest + 0.5) (bilinear, antialiased) -> (pixel - pixel_mean) / "
    "pixel_std -> pad bottom and right with 0 to image_size x image_size -> (1, 3, image_size, "
    "image_size) float32 NCHW",
    "square": "RGB uint8 (H, W, 3) -> resize to image_size x image_size (bilinear, "
    "antialiased) -> (pixel - pixel_mean) / pixel_std -> (1, 3, image_size, image_size) "
    "float32 NCHW",
}
"""The encoder's input, in words, for ``composeseg.json`` (:func:`composeseg.transforms.preprocess`
does it)."""
PROMPTS = (
    "point_coords (N, P, 2) float32 xy in the resized image's pixels (original * resized / "
    "original size, per axis); point_labels (N, P) int64: 1 foreground, 0 background, 2 and 3 "
    "a box's top-left and bottom-right corners, -1 a (0, 0) padding point that ends points "
    "without a box (every prompt when trailing_pad is true); mask_input (N, 1, mask_size, "
    "mask_size) float32 low-res logits, used where has_mask_input (1,) float32 is 1"
)
"""How ``decoder.onnx`` takes prompts, in words, for ``composeseg.json``."""


class OnnxVersionWarning(UserWarning):
    """An export made with other versions than the ones running it."""


def sam_point_prompts(
    boxes: np.ndarray | None,
    points: np.ndarray | None,
    labels: np.ndarray | None,
    count: int,
    *,
    trailing_pad: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Encode C objects' prompts as the decoder graphs' ``point_coords`` / ``point_labels``.

    Args:
        boxes: ``(C, 4)`` xyxy in the model input frame, or None.
        points: ``(C, P, 2)`` xy in the same frame, or None.
        labels: ``(C, P)`` 1 foreground / 0 background / -1 padding, needed with ``points``.
        count: C.
        trailing_pad: SAM 2 appends one not-a-point token to every prompt (transformers'
            ``Sam2Model`` and Meta's SAM 2 do); SAM and SAM-HQ append it only to points without
            a box (``False``).

    Returns:
        ``(C, P', 2) float32`` and ``(C, P') int64``: the points, then the box corners
        (labels 2 and 3), then the padding token (-1 at (0, 0)), the order of transformers' and
        Meta's prompt encoders. A mask-only prompt gives P' = 0 (SAM) or 1 (SAM 2).
    """
    coords = [np.zeros((count, 0, 2), np.float32)]
    codes = [np.zeros((count, 0), np.int64)]
    if points is not None:
        if labels is None:
            raise ValueError("points need labels")
        coords.append(points.astype(np.float32))
        codes.append(labels.astype(np.int64))
    if boxes is not None:
        coords.append(boxes.reshape(count, 2, 2).astype(np.float32))
        codes.append(np.tile(np.array([[BOX_TOP_LEFT, BOX_BOTTOM_RIGHT]], np.int64), (count, 1)))
    if trailing_pad or (points is not None and boxes is None):
        coords.append(np.zeros((count, 1, 2), np.float32))
        codes.append(np.full((count, 1), NOT_A_POINT, np.int64))
    return np.concatenate(coords, axis=1), np.concatenate(codes, axis=1)


@dataclass(frozen=True)
class OnnxManifest:
    """``composeseg.json``: what an export holds and the frame its encoder works in.

    Attributes:
        family: "sam" (SAM, SlimSAM, the demo model), "sam_hq" or "sam2".
        name: the model source it was exported from.
        image_size: S, the side of the square encoder input.
        mask_size: M, the side of the low-res logits (S / 4).
        resize_mode: "longest" (resize the longest side to S, pad bottom/right with zeros
            after normalising) or "square" (stretch to S x S).
        pixel_mean / pixel_std: per-channel RGB, 0-255 scale: ``(pixel - mean) / std``.
        trailing_pad: whether every prompt ends with a (0, 0) point labelled -1 (SAM 2), or
            only points without a box do (SAM, SAM-HQ).
        precision: "fp32", "fp16" or "int8" (dynamic quantization of the weights).
        files: role ("encoder", "decoder", "decoder_meta") -> file name in the directory.
        opset: the ONNX opset.
        versions: library -> version used for the export.
        options: export options (``hq_token_only``, Meta decoder options).
        checks: measured at export: ONNX Runtime against torch, and int8 against fp32.
        upsampling: the exported Sam's mask upsampling, the default of :func:`load_onnx_sam`
            (absent from exports older than the option: bilinear).
    """

    family: str
    name: str
    image_size: int
    mask_size: int
    resize_mode: ResizeMode
    pixel_mean: tuple[float, float, float]
    pixel_std: tuple[float, float, float]
    trailing_pad: bool
    precision: str
    files: dict[str, str]
    opset: int
    versions: dict[str, str]
    options: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    upsampling: str = "bilinear"

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            **asdict(self),
            "preprocess": PREPROCESS[self.resize_mode],
            "prompts": PROMPTS,
        }

    @classmethod
    def read(cls, directory: Path) -> OnnxManifest:
        """Read ``directory/composeseg.json``.

        Raises:
            ValueError: unreadable JSON, another format, a newer format version or missing
                fields, naming the file.
        """
        path = directory / MANIFEST
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(
                f"{path}: not a readable composeseg export manifest ({error})"
            ) from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(
                f"{path}: not a composeseg ONNX export manifest (format != {FORMAT!r})"
            )
        if int(data.get("format_version", 0)) > FORMAT_VERSION:
            raise ValueError(
                f"{path}: format version {data['format_version']} is newer than this composeseg "
                f"reads ({FORMAT_VERSION}); upgrade composeseg"
            )
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        missing = sorted(
            set(cls.__dataclass_fields__) - set(fields) - {"options", "checks", "upsampling"}
        )
        if missing:
            raise ValueError(f"{path}: missing fields {missing}")
        if fields["family"] not in FEATURE_NAMES:
            raise ValueError(
                f"{path}: family {fields['family']!r} is not one composeseg runs "
                f"({', '.join(FEATURE_NAMES)})"
            )
        fields["pixel_mean"] = tuple(fields["pixel_mean"])
        fields["pixel_std"] = tuple(fields["pixel_std"])
        return cls(**fields)


def warn_on_version_mismatch(manifest: OnnxManifest, directory: Path) -> None:
    """Warn when the export was made by another composeseg, or by a newer onnxruntime than the
    one that runs it (its graphs may use what this one lacks)."""
    import onnxruntime

    from composeseg._version import __version__

    recorded = manifest.versions
    problems = []
    if recorded.get("composeseg") not in (None, __version__):
        problems.append(f"composeseg {recorded['composeseg']} (running {__version__})")
    if _release(recorded.get("onnxruntime", "0")) > _release(onnxruntime.__version__):
        problems.append(
            f"onnxruntime {recorded['onnxruntime']} (running {onnxruntime.__version__})"
        )
    if problems:
        warnings.warn(
            f"{directory} was exported with {', '.join(problems)}; re-export it if its results "
            "differ",
            OnnxVersionWarning,
            stacklevel=3,
        )


def _release(version: str) -> tuple[int, ...]:
    """``"1.32.0rc1"`` -> ``(1, 32)``."""
    parts = []
    for part in version.split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit()) or "0"
        parts.append(int(digits))
    return tuple(parts)


class OnnxSessions:
    """The onnxruntime sessions of one export (what :attr:`Sam.model` holds for it).

    Sessions run with as many intra-op threads as torch (``torch.get_num_threads()`` when the
    export is loaded), so ``torch.set_num_threads`` governs both runtimes.

    Attributes:
        directory: the export directory.
        manifest: its ``composeseg.json``.
        encoder: session of the encoder graph.
        decoder: session of the decoder graph without its full-resolution ``masks`` output
            (the :class:`~composeseg.Sam` API upsamples low-res logits itself, in bounded
            slices, and onnxruntime computes every output of a graph whatever is fetched).
    """

    def __init__(self, directory: Path, manifest: OnnxManifest, providers: list[str]) -> None:
        self.directory = directory
        self.manifest = manifest
        self.providers = providers
        for name in manifest.files.values():  # graphs and their external weights, if any
            if not (directory / name).is_file():
                raise ValueError(
                    f"{directory / name} is missing: the export is incomplete; export it again"
                )
        self.encoder = _session(directory, manifest, "encoder", providers)
        self.decoder = _session(directory, manifest, "decoder", providers, low_res_only=True)

    def __repr__(self) -> str:
        return (
            f"OnnxSessions({str(self.directory)!r}, family={self.manifest.family!r}, "
            f"precision={self.manifest.precision!r}, providers={self.providers})"
        )


def _session(
    directory: Path,
    manifest: OnnxManifest,
    role: str,
    providers: list[str],
    low_res_only: bool = False,
) -> Any:
    import onnx
    import onnxruntime

    name = manifest.files.get(role)
    if not name:
        raise ValueError(f"{directory / MANIFEST} names no {role} file")
    path = directory / name
    if not path.is_file():
        raise ValueError(f"{path} is missing: the export is incomplete; export it again")
    options = onnxruntime.SessionOptions()
    # one thread budget for both runtimes: torch's (tests and benchmarks set it; a second
    # full-size pool beside torch's oversubscribes the cores)
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    # the encoder's few large buffers (ViT-B: 3.6 GB peak at 1024) go back to the system after
    # each call instead of staying in onnxruntime's arena; the decoder's many small ones stay
    options.enable_cpu_mem_arena = low_res_only
    try:
        if not low_res_only:  # from the path: weights in a .onnx.data file load beside it
            return onnxruntime.InferenceSession(str(path), options, providers=providers)
        model = _without_full_resolution_masks(onnx.load(str(path)))
        return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=providers)
    except Exception as error:  # protobuf, onnx and onnxruntime raise their own types
        message = f"{path} is not a valid ONNX model ({type(error).__name__}: {error})"
        raise ValueError(message) from error


def _without_full_resolution_masks(model: Any) -> Any:
    """The decoder graph cut down to ``iou_predictions`` and ``low_res_masks``."""
    from onnx.utils import Extractor

    inputs = [i.name for i in model.graph.input if i.name != "orig_im_size"]
    return Extractor(model).extract_model(inputs, ["iou_predictions", "low_res_masks"])


class OnnxBackend(Backend):
    """Runs an export with onnxruntime; features are CPU float32 tensors."""

    def __init__(self, sessions: OnnxSessions) -> None:
        super().__init__(sessions)
        manifest = sessions.manifest
        self.family = manifest.family
        self.resize_mode = manifest.resize_mode
        self.pixel_mean = manifest.pixel_mean
        self.pixel_std = manifest.pixel_std
        self.sessions = sessions
        self._names = FEATURE_NAMES[manifest.family]

    @property
    def image_size(self) -> int:
        return self.sessions.manifest.image_size

    @property
    def mask_size(self) -> int:
        return self.sessions.manifest.mask_size

    def encode(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        pixels = np.ascontiguousarray(pixel_values.detach().float().cpu().numpy())
        outputs = self.sessions.encoder.run(list(self._names), {"pixel_values": pixels})
        return tuple(torch.from_numpy(np.asarray(o)) for o in outputs)

    def decode(
        self, features: tuple[torch.Tensor, ...], prompts: DecoderPrompts, multimask: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        count = len(prompts)
        coords, labels = sam_point_prompts(
            _numpy(prompts.boxes),
            _numpy(prompts.points),
            _numpy(prompts.labels),
            count,
            trailing_pad=self.sessions.manifest.trailing_pad,
        )
        size = self.mask_size
        masks = _numpy(prompts.masks)
        feeds = {
            name: np.ascontiguousarray(_numpy(f), np.float32)
            for name, f in zip(self._names, features, strict=True)
        }
        feeds.update(
            point_coords=coords,
            point_labels=labels,
            mask_input=np.zeros((count, 1, size, size), np.float32) if masks is None else masks,
            has_mask_input=np.array([0.0 if masks is None else 1.0], np.float32),
            multimask_output=np.array([multimask]),
        )
        iou, low_res = self.sessions.decoder.run(["iou_predictions", "low_res_masks"], feeds)
        return torch.from_numpy(low_res), torch.from_numpy(iou)


def _numpy(value: torch.Tensor | None) -> Any:
    if value is None:
        return None
    return np.ascontiguousarray(value.detach().cpu().numpy())


def providers_for(device: str | torch.device | None) -> list[str]:
    """onnxruntime execution providers for a device choice: "cpu", "cuda", or None (CUDA when
    this onnxruntime has it, else CPU).

    Raises:
        ValueError: another device, or "cuda" without onnxruntime's CUDA provider.
    """
    import onnxruntime

    available = onnxruntime.get_available_providers()
    kind = None if device is None else torch.device(device).type
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    if kind in (None, "cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if kind is None:
        return ["CPUExecutionProvider"]
    if kind == "cuda":
        raise ValueError(
            "device='cuda' needs onnxruntime's CUDA provider (pip install onnxruntime-gpu); "
            f"this onnxruntime has {available}"
        )
    raise ValueError(f"an ONNX export runs on 'cpu' or 'cuda', got device={device!r}")


def load_onnx_sam(
    directory: Path,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    decode_batch_size: int = 64,
    upsampling: Upsampling | None = None,
) -> Sam:
    """A :class:`~composeseg.Sam` running the export in ``directory`` (see
    :func:`composeseg.load_sam`).

    Raises:
        MissingExtraError: onnxruntime or onnx is not installed.
        ValueError: a missing or corrupt file (named), a non-float32 ``dtype``.
    """
    from composeseg.extras import require
    from composeseg.sam import Sam
    from composeseg.upsampling import check_upsampling

    require("onnxruntime", extra=EXTRA, purpose="running an ONNX export")
    require("onnx", extra=EXTRA, purpose="running an ONNX export")
    if dtype not in (None, torch.float32):
        raise ValueError(
            f"an ONNX export runs in the precision it was exported with; got dtype={dtype} "
            "(export with --fp16 or --quantize int8 instead)"
        )
    manifest = OnnxManifest.read(directory)
    warn_on_version_mismatch(manifest, directory)
    sessions = OnnxSessions(directory, manifest, providers_for(device))
    return Sam(
        OnnxBackend(sessions),
        device=torch.device("cpu"),  # onnxruntime takes and returns host arrays
        dtype=torch.float32,
        decode_batch_size=decode_batch_size,
        name=f"{directory} (ONNX {manifest.precision}, {manifest.name})",
        upsampling=upsampling or check_upsampling(manifest.upsampling),
    )
