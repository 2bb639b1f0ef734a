"""Build vaenas._C: C++ CPU ops always, CUDA ops when torch is a CUDA build and a toolkit is found.

Switches users know from xformers / apex:
  FORCE_CUDA=1            a missing CUDA toolkit (or a CPU-only torch) is an error
  VAENAS_SKIP_CUDA=1      build the CPU ops only (fast iteration on a laptop)
  TORCH_CUDA_ARCH_LIST    CUDA targets, default "9.0" (Hopper; the chips we benchmark on)
  MAX_JOBS                parallel compile jobs (torch.utils.cpp_extension reads it)
  CUDA_HOME               toolkit root; found from nvcc when unset (see _find_cuda_home)

The decision to build CUDA is taken from the torch build and the toolkit, never from
torch.cuda.is_available(): build machines usually have no GPU (pytorch/ao setup.py).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent.resolve()


def _is_toolkit_root(path: Path) -> bool:
    return (path / "include" / "cuda_runtime.h").is_file() and (path / "bin" / "nvcc").exists()


def _find_cuda_home() -> str | None:
    """The CUDA toolkit root, also when `nvcc` on PATH is a wrapper script.

    torch.utils.cpp_extension guesses CUDA_HOME as dirname(dirname(which nvcc)), which is
    wrong for a wrapper in /usr/local/bin. `nvcc --dryrun` prints the real root as TOP=...
    """
    for variable in ("CUDA_HOME", "CUDA_PATH"):
        value = os.environ.get(variable)
        if value and _is_toolkit_root(Path(value)):
            return str(Path(value).resolve())
    nvcc = shutil.which("nvcc")
    if nvcc:
        try:
            dryrun = subprocess.run(
                [nvcc, "--dryrun", "--version"], capture_output=True, text=True, timeout=60
            )
            match = re.search(r"^#\$ TOP=(.+)$", dryrun.stdout + dryrun.stderr, re.MULTILINE)
            if match and _is_toolkit_root(Path(match.group(1).strip())):
                return str(Path(match.group(1).strip()).resolve())
        except (OSError, subprocess.SubprocessError):
            pass
        real = Path(nvcc).resolve().parent.parent
        if _is_toolkit_root(real):
            return str(real)
    for candidate in ["/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"), reverse=True)]:
        if _is_toolkit_root(Path(candidate)):
            return str(Path(candidate).resolve())
    return None


def _flag(name: str) -> bool:
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


cuda_home = _find_cuda_home()
if cuda_home:
    # Must be set before torch.utils.cpp_extension is imported: it reads CUDA_HOME at import.
    os.environ["CUDA_HOME"] = cuda_home
os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "9.0")

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402

force_cuda = _flag("FORCE_CUDA")
skip_cuda = _flag("VAENAS_SKIP_CUDA")
if force_cuda and torch.version.cuda is None:
    raise RuntimeError(f"FORCE_CUDA=1 but torch {torch.__version__} is a CPU-only build")
if force_cuda and cuda_home is None:
    raise RuntimeError(
        "FORCE_CUDA=1 but no CUDA toolkit was found: set CUDA_HOME to the folder that holds "
        "include/cuda_runtime.h and bin/nvcc"
    )
with_cuda = (force_cuda or not skip_cuda) and torch.version.cuda is not None and cuda_home is not None

# Torch-free kernel layer (csrc/kernels, also built by CMake) + torch bindings (csrc/*.cpp, csrc/cpu).
sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp") + glob.glob("csrc/kernels/*.cpp"))
cuda_sources = sorted(glob.glob("csrc/cuda/*.cu") + glob.glob("csrc/cuda/*.cpp") + glob.glob("csrc/kernels/*.cu"))

build_record = {
    "torch": torch.__version__,
    "torch_cuda": torch.version.cuda,
    "cuda_home": cuda_home if with_cuda else None,
    "cuda_arch_list": os.environ["TORCH_CUDA_ARCH_LIST"] if with_cuda else None,
    "backends": ["cpu", "cuda"] if with_cuda else ["cpu"],
}
(ROOT / "vaenas" / "_C_build.json").write_text(json.dumps(build_record, indent=2) + "\n")

cxx_flags = ["-O3", "-fopenmp"]  # the C++ standard is the one torch asks for (C++20 from 2.13 on)
macros = [("VAENAS_WITH_CUDA", None)] if with_cuda else []
if with_cuda:
    extension = CUDAExtension(
        "vaenas._C",
        sources + cuda_sources,
        include_dirs=[str(ROOT / "csrc")],
        define_macros=macros,
        extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-lineinfo"]},
        extra_link_args=["-fopenmp"],
        py_limited_api=False,
    )
else:
    extension = CppExtension(
        "vaenas._C",
        sources,
        include_dirs=[str(ROOT / "csrc")],
        define_macros=macros,
        extra_compile_args={"cxx": cxx_flags},
        extra_link_args=["-fopenmp"],
    )

setup(
    ext_modules=[extension],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None)},
)
