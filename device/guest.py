"""Running Python inside the prepared userland under qemu-user.

Programs run as ``qemu-aarch64-static -L ROOT ROOT/usr/bin/python3.11 ...``: no chroot and no binfmt
registration. qemu's ``-L`` prefix is looked up first for every absolute path the program opens, and the host's
path after, which is why the userland carries its own ``/proc/cpuinfo``, CPU files and empty ``dist-packages``.

The guest imports the runtime as ``lazydit.runtime`` through a shim package (``ROOT/shim/<hash>/lazydit``)
whose ``runtime`` links the host's runtime folder, so it runs the very code being developed; no other part of
lazydit (not the exporter, not this package) exists there, which is why the runtime imports nothing from here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .. import registry, runtime
from .errors import DeviceError, say, tail
from .marker import require_prepared

__all__ = [
    "DEFAULT_CPU",
    "GUEST_PYTHON",
    "QEMU_DYNAMIC",
    "QEMU_STATIC",
    "find_qemu",
    "refresh_shim",
    "run_guest",
    "run_python",
]

GUEST_PYTHON = "usr/bin/python3.11"

# The emulated core: ARMv8.2 with dot product and fp16 (phones' big cores since 2019) and,
# unlike qemu's default "max", no SVE/SME, which phone builds of the backends rarely take and
# whose emulation in qemu 7.2 raises spurious floating point flags in numpy's OpenBLAS.
DEFAULT_CPU = "cortex-a76"

QEMU_STATIC = "qemu-aarch64-static"
QEMU_DYNAMIC = "qemu-aarch64"
QEMU_FIX = "sudo apt-get install qemu-user-static"


def find_qemu(qemu: str | os.PathLike | None = None, *, install: bool = False, progress: bool = False) -> Path:
    """The qemu-aarch64-static binary: ``qemu`` if given, else ``$LAZYDIT_QEMU``, else PATH.

    With ``install``, a missing default binary is installed with apt-get when running as root.
    """
    if qemu is not None or os.environ.get("LAZYDIT_QEMU"):
        path = Path(qemu if qemu is not None else os.environ["LAZYDIT_QEMU"])
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise DeviceError(f"qemu binary {str(path)!r} not found or not executable; install it with: {QEMU_FIX}")
    found = shutil.which(QEMU_STATIC)
    if found:
        return Path(found)
    if install and shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        say(progress, f"{QEMU_STATIC} missing: apt-get install -y qemu-user-static")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        install_qemu = ["apt-get", "install", "-y", "--no-install-recommends", "qemu-user-static"]
        done = subprocess.run(install_qemu, check=False, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            # The package lists may be missing on a fresh machine.
            subprocess.run(["apt-get", "update"], check=False, capture_output=True, text=True, env=env)
            done = subprocess.run(install_qemu, check=False, capture_output=True, text=True, env=env)
        found = shutil.which(QEMU_STATIC)
        if found:
            return Path(found)
        raise DeviceError(
            f"{QEMU_STATIC} is missing and installing it failed:\n{tail(done.stderr)}\nInstall it with: {QEMU_FIX}"
        )
    raise DeviceError(f"{QEMU_STATIC} not found on PATH; install it with: {QEMU_FIX}")


def _guest_sources() -> dict[str, Path]:
    """What the guest's ``lazydit`` holds: the runtime package (the repo's ``runtime/``) and the
    one module it imports from outside itself, the name registry."""
    return {
        "runtime": Path(runtime.__file__).resolve().parent,
        "registry.py": Path(registry.__file__).resolve(),
    }


def refresh_shim(root: Path) -> Path:
    """A folder holding ``lazydit/``: a stand-in ``__init__`` and links to the runtime's sources.

    One per source folder (several checkouts may share a cache), in ``ROOT/shim/<hash>``.
    """
    sources = _guest_sources()
    shim = root / "shim" / hashlib.sha256(str(sources["runtime"]).encode()).hexdigest()[:12]
    pkg = shim / "lazydit"
    pkg.mkdir(parents=True, exist_ok=True)
    init = pkg / "__init__.py"
    text = '"""lazydit on the emulated device: only the runtime package is present."""\n'
    if not init.is_file() or init.read_text() != text:
        init.write_text(text)
    for name, target in sources.items():
        link = pkg / name
        if not (link.is_symlink() and Path(os.readlink(link)) == target):
            tmp = pkg / f".{name}.{os.getpid()}"
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(target, target_is_directory=target.is_dir())
            os.replace(tmp, link)
    return shim


def _guest_env(root: Path, env: dict | None, shim: Path | None = None) -> dict:
    out = {
        "PATH": "/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONNOUSERSITE": "1",
        # No cwd / script folder on sys.path: a checkout's lazydit/ would shadow the shim.
        "PYTHONSAFEPATH": "1",
        "PYTHONPATH": f"{shim}:{root / 'site'}" if shim else str(root / "site"),
        "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
        "QEMU_CPU": DEFAULT_CPU,
    }
    for key in ("OMP_NUM_THREADS",):
        if key in os.environ:
            out[key] = os.environ[key]
    if env:
        env = dict(env)
        extra = env.pop("PYTHONPATH", None)
        out.update({k: str(v) for k, v in env.items()})
        if extra:
            out["PYTHONPATH"] = f"{extra}:{out['PYTHONPATH']}"
    return out


def run_guest(
    root: str | os.PathLike,
    args: Sequence[str | os.PathLike],
    *,
    qemu: str | os.PathLike | None = None,
    env: dict | None = None,
    cwd: str | os.PathLike | None = None,
    timeout: float | None = None,
    capture_output: bool = True,
    qemu_args: Sequence[str] = (),
    qemu_binary: str | os.PathLike | None = None,
    shim: Path | None = None,
) -> subprocess.CompletedProcess:
    """The guest interpreter under qemu, with no check that the root is complete.

    The builder needs it before the marker exists; ``run_python`` and the instruction counter check first.
    """
    root = Path(root)
    binary = qemu_binary or find_qemu(qemu)
    cmd = [str(binary), "-L", str(root), *qemu_args, str(root / GUEST_PYTHON), *[str(a) for a in args]]
    try:
        return subprocess.run(
            cmd,
            env=_guest_env(root, env, shim),
            cwd=cwd,
            timeout=timeout,
            check=False,
            capture_output=capture_output,
            text=True,
        )
    except subprocess.TimeoutExpired as err:
        raise DeviceError(
            f"emulated run timed out after {timeout} s: {' '.join(cmd[-len(args) :])}\n{tail(err.stderr)}"
        ) from err


def run_python(
    root: str | os.PathLike,
    args: list[str],
    env: dict | None = None,
    cwd: str | os.PathLike | None = None,
    timeout: float | None = None,
    *,
    qemu: str | os.PathLike | None = None,
    capture_output: bool = True,
) -> subprocess.CompletedProcess:
    """Run ``python3.11 *args`` inside the userland under qemu; returns the finished process.

    ``import lazydit.runtime.<module>`` works there (a shim package links the runtime folder), and
    ``ROOT/site`` holds numpy, onnxruntime (and torch + executorch if prepared with them).
    The guest gets a clean environment plus ``env`` (a ``PYTHONPATH`` there is prepended;
    ``QEMU_*`` settings reach qemu: the core is ``QEMU_CPU``, ``DEFAULT_CPU`` unless given,
    ``qemu-aarch64-static -cpu help`` lists the others). Neither the working folder nor the
    script's folder goes on ``sys.path`` (``PYTHONSAFEPATH``): a checkout's ``lazydit/``
    would hide the shim. Output is captured as text unless ``capture_output=False``. A
    non-zero exit is returned, not raised; a timeout raises ``DeviceError``.
    """
    root = require_prepared(root)
    shim = refresh_shim(root)
    return run_guest(root, args, qemu=qemu, env=env, cwd=cwd, timeout=timeout, capture_output=capture_output, shim=shim)
