"""The aarch64 wheels of the userland: which ones, and pip fetching them for a platform other than the host's.

numpy, onnxruntime and (optionally) executorch are PyPI's aarch64 wheels, installed with
``pip install --platform manylinux..._aarch64 --target ROOT/site``: no emulated pip, no compiler.

ExecuTorch's Python runtime (``executorch.extension.pybindings``) links libtorch and takes and returns
``torch.Tensor``, so running a ``.pte`` needs torch in the userland, and the very torch release the bindings
were compiled against (they inline libtorch's struct layouts: a mismatch fails with "tensor does not have a
device"). PyPI's aarch64 torch wheels from 2.11 on are CUDA builds (libtorch links the CUDA 13 libraries,
gigabytes of NVIDIA wheels); 2.10.0 is the newest CPU-only one, and ExecuTorch 1.1.0 is the release built
against it. So the userland gets ExecuTorch 1.1.0 on torch 2.10.0 (``EXECUTORCH_AARCH64``, ``TORCH_AARCH64``)
whatever the host exports with; it runs ``.pte`` files written by newer exporters as long as they use no newer
operator or format feature.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version

from .errors import DeviceError, tail

__all__ = [
    "EXECUTORCH_AARCH64",
    "EXECUTORCH_RUNTIME_API_DEPS",
    "TORCH_AARCH64",
    "pip",
    "pip_platform_args",
    "wanted_wheel",
    "wheel_requirements",
]

# Newest torch whose PyPI aarch64 wheel is a CPU build (later ones need the CUDA wheels) ...
TORCH_AARCH64 = "2.10.0"
# ... and the ExecuTorch release whose bindings were built against it.
EXECUTORCH_AARCH64 = "1.1.0"
# All ``import torch`` needs besides torch itself (sympy, networkx, jinja2, ... load lazily).
TORCH_IMPORT_DEPS = ("typing_extensions",)

# What ``executorch.runtime`` / ``portable_lib`` add on top: they import ``executorch.exir``,
# hence most of the exporter's dependencies (about 35 s of imports under emulation against
# 12 s for ``executorch_bindings()``). Pass as ``prepare(extra_wheels=...)`` to use them.
EXECUTORCH_RUNTIME_API_DEPS = (
    "sympy",
    "mpmath",
    "filelock",
    "networkx",
    "jinja2",
    "markupsafe",
    "fsspec",
    "ruamel.yaml",
    "pyyaml",
    "flatbuffers",
    "packaging",
    "tabulate",
)

WHEEL_PLATFORMS = (
    "manylinux_2_36_aarch64",
    "manylinux_2_35_aarch64",
    "manylinux_2_34_aarch64",
    "manylinux_2_31_aarch64",
    "manylinux_2_28_aarch64",
    "manylinux_2_27_aarch64",
    "manylinux_2_26_aarch64",
    "manylinux_2_24_aarch64",
    "manylinux_2_17_aarch64",
    "manylinux2014_aarch64",
)


def _host_version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _normalized(name: str) -> str:
    """A distribution name as PyPI compares them (PEP 503): ``ruamel.yaml`` is ``ruamel_yaml``'s wheel."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_requirements(with_executorch: bool, extra: tuple[str, ...] = ()) -> list[str]:
    """numpy and onnxruntime pinned to the host's versions, so host and device results compare."""
    reqs = []
    for dist in ("numpy", "onnxruntime"):
        ver = _host_version(dist)
        reqs.append(f"{dist}=={ver}" if ver else dist)
    if with_executorch:
        reqs += [f"executorch=={EXECUTORCH_AARCH64}", f"torch=={TORCH_AARCH64}", *TORCH_IMPORT_DEPS]

    def name(req: str) -> str:
        return _normalized(re.split(r"[=<>!~\[; ]", req, maxsplit=1)[0])

    have = {name(r) for r in reqs}
    return reqs + [r for r in extra if name(r) not in have]


def pip_platform_args() -> list[str]:
    """pip options selecting CPython 3.11 aarch64 wheels only, whatever the host's platform."""
    args = [
        "--only-binary=:all:",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--abi",
        "cp311",
        "--abi",
        "abi3",
        "--abi",
        "none",
    ]
    for plat in WHEEL_PLATFORMS:
        args += ["--platform", plat]
    return args


def pip(args: list[str], what: str) -> None:
    """The host's pip (it never runs in the guest); a failure raises ``DeviceError`` saying ``what`` failed."""
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise DeviceError(
            f"{what} failed (pip {' '.join(args[:2])} ...):\n{tail(done.stderr or done.stdout)}\n"
            "Check access to PyPI and run prepare again: finished downloads are kept."
        )


def wanted_wheel(filename: str, reqs: list[str]) -> bool:
    """Whether a downloaded wheel file satisfies one of ``reqs``: others are left over from an older recipe."""
    name, _, rest = filename.partition("-")
    wheel_version = rest.split("-", 1)[0]
    norm = _normalized(name)
    for req in reqs:
        rname, _, rver = req.partition("==")
        if _normalized(rname) == norm and (not rver or rver == wheel_version):
            return True
    return False
