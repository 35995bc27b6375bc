"""``load_sam``: hub ids, ``save_pretrained`` directories, Meta checkpoints, the demo model."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from composeseg.backends.attention import AttentionImpl
    from composeseg.backends.base import Backend
    from composeseg.refiner import MaskRefiner
    from composeseg.sam import Sam
    from composeseg.upsampling import Upsampling

UPSAMPLING_KEY = "composeseg_upsampling"
"""A model config entry naming the upsampling :func:`load_sam` uses for it by default."""
DEMO_MODEL_DIR = Path(__file__).parent / "assets" / "demo_sam"
"""Where the embedded demo model lives inside the package."""
DEMO_CLIP_DIR = Path(__file__).parent / "assets" / "demo_clip"
"""The embedded demo text model (:class:`composeseg.adapters.ClipMatcher` with no argument)."""
DEMO_GROUNDER_DIR = Path(__file__).parent / "assets" / "demo_grounder"
"""The embedded demo grounder, a tiny OWL-ViT (:class:`composeseg.adapters.TransformersGrounder`
with no argument)."""

# transformers ``model_type`` -> (model class name, backend module, backend class)
_FAMILIES: dict[str, tuple[str, str, str]] = {
    "sam": ("SamModel", "composeseg.backends.sam", "SamBackend"),
    "sam_hq": ("SamHQModel", "composeseg.backends.sam_hq", "SamHQBackend"),
    "sam2": ("Sam2Model", "composeseg.backends.sam2", "Sam2Backend"),
    "sam2_video": ("Sam2Model", "composeseg.backends.sam2", "Sam2Backend"),
}

KNOWN_MODELS: dict[str, str] = {
    "sam-vit-base": "facebook/sam-vit-base",
    "sam-vit-large": "facebook/sam-vit-large",
    "sam-vit-huge": "facebook/sam-vit-huge",
    "slimsam-50": "nielsr/slimsam-50-uniform",
    "slimsam-77": "nielsr/slimsam-77-uniform",
    "sam-hq-vit-base": "syscv-community/sam-hq-vit-base",
    "sam-hq-vit-large": "syscv-community/sam-hq-vit-large",
    "sam-hq-vit-huge": "syscv-community/sam-hq-vit-huge",
    "sam2.1-hiera-tiny": "facebook/sam2.1-hiera-tiny",
    "sam2.1-hiera-small": "facebook/sam2.1-hiera-small",
    "sam2.1-hiera-base-plus": "facebook/sam2.1-hiera-base-plus",
    "sam2.1-hiera-large": "facebook/sam2.1-hiera-large",
}
"""Short names accepted by :func:`load_sam` for the released hub checkpoints."""

_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
ONNX_MANIFEST = "composeseg.json"
"""The file that marks a directory as an ONNX export (:mod:`composeseg.backends.onnx`)."""


def load_sam(
    source: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    decode_batch_size: int = 64,
    attention: AttentionImpl = "lean",
    compile: bool = False,
    upsampling: Upsampling | None = None,
) -> Sam:
    """Load a SAM-family model behind one interface.

    Args:
        source: one of
            - ``None``: the embedded demo model shipped in the package (works offline);
            - a local directory written by ``save_pretrained`` (SAM, SlimSAM, SAM-HQ, SAM 2);
            - a directory written by :func:`composeseg.export_onnx` (it has
              ``composeseg.json``), run by onnxruntime on "cpu" or "cuda" in the precision it
              was exported with (``pip install "composeseg[onnx]"``);
            - an original Meta checkpoint file (``sam_vit_b_01ec64.pth`` …), converted in
              memory;
            - a hub id (``facebook/sam-vit-base``) or a short name from :data:`KNOWN_MODELS`,
              loaded with ``from_pretrained``.
        device: "cuda", "mps", "cpu" or a ``torch.device``; default:
            :func:`composeseg.device.pick_device` (cuda, then mps, then cpu).
        dtype: model dtype; default float32. ``torch.bfloat16`` is faster on CPUs with bf16
            support and on GPUs; ``torch.float16`` on GPUs only.
            :func:`composeseg.device.preferred_dtype` names the faster one for a device.
        decode_batch_size: objects per decoder call (see :class:`~composeseg.Sam`).
        attention: image-encoder attention of SAM, SlimSAM and SAM-HQ. ``"lean"`` (default):
            chunked SDPA that never forms the N x N attention map
            (:mod:`composeseg.backends.attention`; less than half the memory, ~1.3x faster on
            a CPU); ``"transformers"``: the model's own modules. SAM 2 is the same either way.
        compile: run the image encoder through ``torch.compile`` (opt-in; the first call
            compiles). Where compilation fails, a warning and the eager encoder
            (:mod:`composeseg.backends.compiling`).
        upsampling: ``"bilinear"`` (Meta's), ``"guided"``: masks refitted to the image's
            edges (:mod:`composeseg.upsampling`; see :class:`~composeseg.Sam`), or
            ``"learned"``: guided, then corrected by the learned mask refiner a model
            directory may hold (:mod:`composeseg.refiner`). Default: what the model's config
            names as ``composeseg_upsampling`` (the demo model: learned; an ONNX export: the
            exported model's), else bilinear.

    Raises:
        FileNotFoundError: a path-like source that does not exist.
        ValueError: a source that exists but is not a SAM model (corrupt file, unknown
            architecture), naming the source and what was tried; an unknown ``attention``.
    """
    import torch

    from composeseg.device import pick_device, quiet_loading
    from composeseg.sam import Sam
    from composeseg.upsampling import check_upsampling

    if attention not in ("lean", "transformers"):
        raise ValueError(f"attention must be 'lean' or 'transformers', got {attention!r}")
    if upsampling is not None:
        check_upsampling(upsampling)

    export = None if source is None else Path(os.fspath(source)).expanduser()
    if export is not None and (export / ONNX_MANIFEST).is_file():
        from composeseg.backends.onnx import load_onnx_sam

        return load_onnx_sam(
            export,
            device=device,
            dtype=dtype,
            decode_batch_size=decode_batch_size,
            upsampling=upsampling,
        )
    target = pick_device(device)
    dtype = dtype or torch.float32
    if dtype == torch.float16 and target.type == "cpu":
        raise ValueError("float16 is not supported on CPU; use torch.bfloat16 or torch.float32")
    with quiet_loading():
        model, name = _load_model(source)
    model = model.to(device=target, dtype=dtype).eval()
    if attention == "lean":
        from composeseg.backends.attention import use_lean_attention

        use_lean_attention(model)
    backend = _backend_for(model)
    if compile:
        from composeseg.backends.compiling import compile_encoder

        compile_encoder(backend)
    return Sam(
        backend,
        device=target,
        dtype=dtype,
        decode_batch_size=decode_batch_size,
        name=name,
        upsampling=upsampling
        or check_upsampling(getattr(model.config, UPSAMPLING_KEY, "bilinear")),
        refiner=_refiner_of(source),
    )


def _refiner_of(source: str | os.PathLike | None) -> MaskRefiner | None:
    """The learned mask refiner stored beside a model directory's weights, if any."""
    from composeseg.refiner import load_refiner

    if source is None:
        return load_refiner(DEMO_MODEL_DIR)
    path = Path(os.fspath(source)).expanduser()
    return load_refiner(path) if path.is_dir() else None


def _load_model(source: str | os.PathLike | None) -> tuple[Any, str]:
    if source is None:
        if not (DEMO_MODEL_DIR / "config.json").exists():
            raise FileNotFoundError(
                f"the embedded demo model is missing from this install ({DEMO_MODEL_DIR}); "
                "pass a model source, e.g. load_sam('facebook/sam-vit-base')"
            )
        return _from_directory(DEMO_MODEL_DIR), "composeseg-demo"
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.is_dir():
        return _from_directory(path), text
    if path.is_file():
        return _from_checkpoint_file(path), text
    if looks_like_path(text):
        raise FileNotFoundError(f"model source {text!r} is not an existing file or directory")
    return _from_hub(KNOWN_MODELS.get(text, text), text), text


def looks_like_path(text: str) -> bool:
    """Whether a model source that does not exist was meant as a local path (then it is
    reported missing) rather than a hub id ("name" or "org/name")."""
    return (
        text.startswith((".", "/", "~"))
        or text.endswith((*_CHECKPOINT_SUFFIXES, ".safetensors"))
        or text.count("/") > 1
        or "\\" in text
    )


def _model_class(model_type: str, source: str) -> Any:
    import transformers

    if model_type not in _FAMILIES:
        hint = (
            "; SAM 3 takes text concepts: load it with composeseg.load_sam3"
            if model_type.startswith("sam3")
            else ""
        )
        raise ValueError(
            f"{source}: model_type {model_type!r} is not a supported SAM family "
            f"(supported: {', '.join(sorted(_FAMILIES))}){hint}"
        )
    class_name = _FAMILIES[model_type][0]
    model_class = getattr(transformers, class_name, None)
    if model_class is None:
        raise ValueError(
            f"{source}: transformers {transformers.__version__} has no {class_name}; "
            "upgrade transformers"
        )
    return model_class


def read_model_type(path: Path) -> str:
    """The transformers ``model_type`` of a ``save_pretrained`` directory.

    Raises:
        ValueError: no ``config.json``, or one without a readable ``model_type`` (names it).
    """
    config_file = path / "config.json"
    if not config_file.is_file() and any(path.glob("*.onnx")):
        raise ValueError(
            f"{path} holds .onnx files but no {ONNX_MANIFEST}: not a composeseg ONNX export "
            "(write one with composeseg.export_onnx / composeseg export onnx)"
        )
    if not config_file.is_file():
        raise ValueError(f"{path} has no config.json: not a save_pretrained model directory")
    try:
        return str(json.loads(config_file.read_text())["model_type"])
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as error:
        raise ValueError(f"{config_file} is not a valid transformers config ({error})") from None


def _from_directory(path: Path) -> Any:
    import pickle

    from safetensors import SafetensorError

    from composeseg.errors import first_line

    model_class = _model_class(read_model_type(path), str(path))
    try:
        return model_class.from_pretrained(path)
    except (pickle.UnpicklingError, SafetensorError, EOFError) as error:
        # transformers reads .bin weights with weights_only=True and refuses other pickles;
        # say which file, in one line, instead of the unpickler's traceback
        files = sorted(p.name for p in path.iterdir() if p.suffix in (".safetensors", ".bin"))
        reason = first_line(error) or type(error).__name__
        raise ValueError(
            f"{path}: the weights ({', '.join(files) or 'none found'}) are unreadable or "
            f"not plain tensors, refused ({type(error).__name__}: {reason[:200]})"
        ) from None
    except (OSError, ValueError, RuntimeError) as error:
        raise ValueError(f"{path}: loading {model_class.__name__} failed: {error}") from error


def _from_checkpoint_file(path: Path) -> Any:
    if path.suffix == ".safetensors" or path.name == "config.json":
        raise ValueError(
            f"{path}: pass the directory that holds config.json and the weights, not one file"
        )
    from composeseg.convert import load_meta_sam_checkpoint

    return load_meta_sam_checkpoint(path)


def _from_hub(repo_id: str, name: str) -> Any:
    """``from_pretrained`` from the cache, or from the hub when it answers.

    Without a network the hub client retries for half a minute before giving up; a cache miss
    with the hub unreachable fails at once instead, and a near-miss of a known short name says
    which one was probably meant.
    """
    from huggingface_hub import constants, try_to_load_from_cache
    from transformers import AutoConfig

    cached = isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    offline = bool(constants.HF_HUB_OFFLINE)
    if not offline and not cached:
        unreachable = _hub_unreachable(constants.ENDPOINT)
        if unreachable:
            raise ValueError(
                f"{name!r} is not a local file or directory, not in the hub cache "
                f"({constants.HF_HUB_CACHE}), and the hub is unreachable ({unreachable})"
                f"{_did_you_mean(name)}"
            )
    local = {"local_files_only": True} if offline else {}
    try:
        config = AutoConfig.from_pretrained(repo_id, **local)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"{name!r} is not a local file or directory, and loading it as a hub id failed "
            f"(no network, or no such repository?){_did_you_mean(name)}: {error}"
        ) from error
    model_class = _model_class(config.model_type, repo_id)
    return model_class.from_pretrained(repo_id, **local)


def _hub_unreachable(endpoint: str, timeout: float = 3.0) -> str | None:
    """Why a TCP connection to the hub failed, or None when it opened (or a proxy decides)."""
    import socket
    from urllib.parse import urlsplit

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # only the proxy knows; let the hub client try
    url = urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return None
    except OSError as error:
        return f"{url.hostname}:{port}: {error}"


def _did_you_mean(name: str) -> str:
    import difflib

    known = [*KNOWN_MODELS, *KNOWN_MODELS.values()]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
    return f"; did you mean {close[0]!r}?" if close and close[0] != name else ""


def _backend_for(model: Any) -> Backend:
    import importlib

    model_type = getattr(model.config, "model_type", None)
    if model_type not in _FAMILIES:
        raise ValueError(f"no composeseg backend for model_type {model_type!r}")
    _, module, class_name = _FAMILIES[model_type]
    backend_class = getattr(importlib.import_module(module), class_name)
    backend: Backend = backend_class(model)
    return backend
