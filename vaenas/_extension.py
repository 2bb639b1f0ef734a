"""Loading of the compiled extension vaenas._C, and what it was built with.

A failed load says what was expected and how to rebuild, instead of a bare ImportError from deep
inside (the idea of xformers/_cpp_lib.py).
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

REBUILD_HINT = "rebuild it against the installed torch: pip install --no-build-isolation -e ."
_BUILD_RECORD = Path(__file__).with_name("_C_build.json")


class ExtensionNotAvailable(RuntimeError):
    """vaenas._C is missing or does not load; pure-PyTorch and Triton backends still work."""


def build_record() -> dict:
    """What setup.py recorded when it built vaenas._C (torch and CUDA versions, backends)."""
    try:
        return json.loads(_BUILD_RECORD.read_text())
    except (OSError, ValueError):
        return {}


@functools.lru_cache(maxsize=None)
def load() -> None:
    """Import vaenas._C (registers torch.ops.vaenas.*). Raises ExtensionNotAvailable with a reason."""
    record = build_record()
    try:
        from vaenas import _C  # noqa: F401  (import registers the ops)
    except (ImportError, OSError) as error:
        built_for = (
            f"it was built for torch {record['torch']} (CUDA {record['torch_cuda']})"
            if record
            else "no build record was found (the extension was never built)"
        )
        raise ExtensionNotAvailable(
            f"vaenas._C failed to load ({error}); {built_for}, the running torch is "
            f"{torch.__version__} (CUDA {torch.version.cuda}): {REBUILD_HINT}"
        ) from error
    if record and record.get("torch") != torch.__version__:
        logger.warning(
            "vaenas._C was built for torch %s but torch %s is running: %s",
            record.get("torch"), torch.__version__, REBUILD_HINT,
        )


def available() -> bool:
    try:
        load()
    except ExtensionNotAvailable:
        return False
    return True


def compiled_with_cuda() -> bool:
    return available() and bool(torch.ops.vaenas.compiled_with_cuda())


def build_info() -> dict:
    """Which backends are compiled, for which torch / CUDA / GPU architectures.

    Example: {'extension_loaded': True, 'backends': ['reference', 'cpu', 'cuda', 'triton'],
    'built_for_torch': '2.14.1+cu130', 'built_for_cuda': '13.0', 'cuda_arch_list': '9.0', ...}
    """
    record = build_record()
    info: dict = {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "gpu_available": torch.cuda.is_available(),
        "extension_loaded": available(),
        "built_for_torch": record.get("torch"),
        "built_for_cuda": record.get("torch_cuda") if record.get("cuda_home") else None,
        "cuda_arch_list": record.get("cuda_arch_list"),
    }
    backends = ["reference"]
    if info["extension_loaded"]:
        backends.append("cpu")
        if compiled_with_cuda():
            backends.append("cuda")
    try:
        import triton  # noqa: F401

        backends.append("triton")
        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    info["backends"] = backends
    if not info["extension_loaded"]:
        try:
            load()
        except ExtensionNotAvailable as error:
            info["extension_error"] = str(error)
    return info
