"""Backend selection for vaenas.ops (the xformers dispatch idea, xformers/ops/fmha/dispatch.py).

Each backend says why it cannot serve a call (`not_supported_reasons`); the fastest one with no
reasons wins. A backend can be forced with the `backend=` argument of an op or the environment
variable VAENAS_BACKEND=reference|aten|cpu|cuda|triton; a forced backend that cannot serve the call is
an error that lists its reasons, never a silent fallback.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Callable

import torch

from vaenas import _extension

BACKEND_NAMES = ("reference", "aten", "cpu", "cuda", "triton")

# Fastest first, per device type. Triton on a CPU runs only under its interpreter (tests), so it
# is never chosen automatically there.
# "aten": composed of PyTorch's own fused kernels (no kernel of ours); ops that have one of their
# own prefer it.
PREFERENCE = {
    "cuda": ("cuda", "triton", "aten", "reference"),
    "cpu": ("cpu", "aten", "reference"),
}


@dataclass(frozen=True)
class Backend:
    name: str
    not_supported_reasons: Callable[[torch.device], list[str]]


def _reference_reasons(device: torch.device) -> list[str]:
    return []


def _cpu_reasons(device: torch.device) -> list[str]:
    reasons = []
    if device.type != "cpu":
        reasons.append(f"the C++ CPU backend takes CPU tensors, got {device.type}")
    if not _extension.available():
        try:
            _extension.load()
        except _extension.ExtensionNotAvailable as error:
            reasons.append(str(error))
    return reasons


def _cuda_reasons(device: torch.device) -> list[str]:
    reasons = []
    if device.type != "cuda":
        reasons.append(f"the CUDA backend takes CUDA tensors, got {device.type}")
    if not _extension.compiled_with_cuda():
        reasons.append("vaenas._C was built without CUDA (no CUDA toolkit or CPU-only torch at build time)")
    return reasons


def triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _triton_reasons(device: torch.device) -> list[str]:
    reasons = []
    if importlib.util.find_spec("triton") is None:
        reasons.append("triton is not installed")
    if device.type == "cpu" and not triton_interpreted():
        reasons.append("Triton runs on CPU tensors only under its interpreter (TRITON_INTERPRET=1)")
    elif device.type not in ("cpu", "cuda"):
        reasons.append(f"Triton takes CUDA tensors, got {device.type}")
    return reasons


BACKENDS = {
    "reference": Backend("reference", _reference_reasons),
    "aten": Backend("aten", _reference_reasons),  # plain PyTorch: runs wherever the reference runs
    "cpu": Backend("cpu", _cpu_reasons),
    "cuda": Backend("cuda", _cuda_reasons),
    "triton": Backend("triton", _triton_reasons),
}


def choose_backend(op_name: str, device: torch.device, requested: str | None, implemented: tuple[str, ...]) -> str:
    """The backend that runs `op_name` on `device`.

    requested: an explicit choice (argument) or None, then VAENAS_BACKEND, then the fastest.
    implemented: the backends this op has.
    """
    requested = requested or os.environ.get("VAENAS_BACKEND") or None
    if requested is not None:
        if requested not in BACKEND_NAMES:
            raise ValueError(f"unknown backend {requested!r} for {op_name}: choose one of {', '.join(BACKEND_NAMES)}")
        reasons = [] if requested in implemented else [f"{op_name} has no {requested} implementation"]
        reasons += BACKENDS[requested].not_supported_reasons(device)
        if reasons:
            raise RuntimeError(f"backend {requested!r} cannot run {op_name} on {device}: " + "; ".join(reasons))
        return requested
    rejected = []
    for name in PREFERENCE.get(device.type, ("reference",)):
        if name not in implemented:
            continue
        reasons = BACKENDS[name].not_supported_reasons(device)
        if not reasons:
            return name
        rejected.append(f"{name}: {'; '.join(reasons)}")
    raise RuntimeError(f"no backend can run {op_name} on {device}: " + " | ".join(rejected))
