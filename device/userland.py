"""Building the emulated phone's userland: a Debian arm64 root in a cache folder, the host left untouched.

``prepare()`` builds it without root filesystem tricks (no chroot, no binfmt registration, no foreign
architecture added to the host's dpkg): the Debian packages come from a private apt (``apt.py``) and are
unpacked with ``dpkg -x``, the Python wheels from pip for the aarch64 platform (``wheels.py``).

qemu looks every absolute path up under the root first (see ``guest.py``), so the root also carries an ARM
``/proc/cpuinfo`` and ``/sys/devices/system/cpu/{possible,present,online}``: onnxruntime's aarch64 build dies
with SIGSEGV at import when it reads the host's.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .apt import SUITE, Apt
from .errors import DeviceError, say, tail
from .guest import GUEST_PYTHON, find_qemu, run_guest
from .marker import MARKER, userland_info
from .wheels import pip, pip_platform_args, wanted_wheel, wheel_requirements

__all__ = ["SUPPORTED_ARCHES", "default_cache_dir", "prepare"]

SUPPORTED_ARCHES = ("arm64",)
LAYOUT_VERSION = 1

# What Python 3.11 needs at run time; apt resolves the rest of the dependency closure.
DEB_PACKAGES = (
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "python3.11",
    "libc6",
    "libstdc++6",
    "libgcc-s1",
    "zlib1g",
    "libffi8",
    "libssl3",
    "libexpat1",
    "libbz2-1.0",
    "liblzma5",
    "libsqlite3-0",
)

# One Cortex-A76 entry per host CPU; only its form matters (cpuinfo parsers need ARM fields).
_CPUINFO_ENTRY = """processor\t: {n}
BogoMIPS\t: 38.40
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x4
CPU part\t: 0xd0b
CPU revision\t: 1

"""


def default_cache_dir(arch: str = "arm64") -> Path:
    """Where ``prepare`` builds by default: the XDG cache, shared by every checkout of the user."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lazydit" / "device" / arch


def _check_arch(arch: str) -> None:
    if arch not in SUPPORTED_ARCHES:
        raise DeviceError(
            f"unsupported device architecture {arch!r}: only {', '.join(SUPPORTED_ARCHES)} "
            "(aarch64 phones, emulated with qemu-user) is supported"
        )


def _write_cpu_files(root: Path, ncpu: int) -> None:
    (root / "proc").mkdir(exist_ok=True)
    (root / "proc/cpuinfo").write_text("".join(_CPUINFO_ENTRY.format(n=i) for i in range(ncpu)))
    cpu = root / "sys/devices/system/cpu"
    cpu.mkdir(parents=True, exist_ok=True)
    span = "0" if ncpu == 1 else f"0-{ncpu - 1}"
    for name in ("possible", "present", "online"):
        (cpu / name).write_text(span + "\n")
    for i in range(ncpu):  # MIDR of a Cortex-A76 r4p1, read by ExecuTorch's cpuinfo utilities
        regs = cpu / f"cpu{i}/regs/identification"
        regs.mkdir(parents=True, exist_ok=True)
        (regs / "midr_el1").write_text("0x00000000414fd0b1\n")


def _recipe(with_executorch: bool, extra: tuple[str, ...] = ()) -> dict:
    return {
        "layout": LAYOUT_VERSION,
        "arch": "arm64",
        "suite": SUITE,
        "debs": list(DEB_PACKAGES),
        "wheels": wheel_requirements(with_executorch, extra),
        "executorch": with_executorch,
    }


def prepare(
    arch: str = "arm64",
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    *,
    executorch: bool = True,
    qemu: str | os.PathLike | None = None,
    force: bool = False,
    extra_wheels: tuple[str, ...] | list[str] = (),
) -> Path:
    """Build (once) and return the root of an aarch64 userland able to run the lazydit runtime.

    Cached under ``cache_dir`` (default ``~/.cache/lazydit/device/arm64``): the root is
    ``cache_dir/root``, complete once its marker file exists. Downloads are kept in
    ``cache_dir/downloads`` and the root is assembled in a temporary folder renamed into
    place, so an interrupted prepare resumes where it stopped. ``executorch=False`` leaves
    out ExecuTorch and torch (about 600 MB unpacked); ``extra_wheels`` adds requirements
    (installed without their dependencies, e.g. ``EXECUTORCH_RUNTIME_API_DEPS``). A different
    recipe rebuilds the root from the kept downloads. Raises ``DeviceError``.
    """
    _check_arch(arch)
    find_qemu(qemu, install=qemu is None, progress=progress)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(arch)
    root = cache / "root"
    recipe = _recipe(executorch, tuple(extra_wheels))
    info = userland_info(root)
    if info and not force and info.get("recipe") == recipe:
        return root
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        say(progress, f"building the {arch} userland in {cache}")
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per cache; a waiter finds it done
        info = userland_info(root)
        if info and not force and info.get("recipe") == recipe:
            return root
        return _build(cache, root, recipe, qemu, progress)


def _build(cache: Path, root: Path, recipe: dict, qemu: str | os.PathLike | None, progress: bool) -> Path:
    started = time.monotonic()
    downloads = cache / "downloads"

    say(progress, f"resolving Debian {SUITE} arm64 packages for Python 3.11")
    apt = Apt(cache / "apt")
    apt.update()
    pins = apt.resolve(DEB_PACKAGES)
    say(progress, f"downloading {len(pins)} Debian packages into {downloads / 'debs'}")
    debs = apt.download(pins, downloads / "debs")

    wheels_dir = downloads / "wheels"
    wheels_dir.mkdir(parents=True, exist_ok=True)
    reqs = recipe["wheels"]
    say(progress, f"downloading aarch64 wheels: {' '.join(reqs)}")
    pip(
        ["download", "--no-deps", "-d", str(wheels_dir), *pip_platform_args(), *reqs],
        what="downloading the aarch64 wheels",
    )

    tmp = Path(tempfile.mkdtemp(prefix="root.partial-", dir=cache))
    try:
        say(progress, f"unpacking {len(debs)} packages with dpkg -x")
        for deb in debs:
            done = subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=False, capture_output=True, text=True)
            if done.returncode != 0:
                raise DeviceError(
                    f"dpkg -x {deb.name} failed:\n{tail(done.stderr)}\nDelete {deb} and run prepare again."
                )
        if not (tmp / GUEST_PYTHON).is_file():
            raise DeviceError(f"the unpacked packages hold no {GUEST_PYTHON}")
        say(progress, "installing the wheels into site/")
        pip(
            [
                "install",
                "--no-index",
                "--find-links",
                str(wheels_dir),
                "--no-deps",
                "--target",
                str(tmp / "site"),
                *pip_platform_args(),
                *reqs,
            ],
            what="installing the aarch64 wheels",
        )
        for junk in ("site/torch/include", "site/torch/share", "site/bin"):
            shutil.rmtree(tmp / junk, ignore_errors=True)
        # Empty dist-packages folders shadow the host's: qemu -L falls back to host paths.
        for d in ("usr/lib/python3/dist-packages", "usr/local/lib/python3.11/dist-packages", "shim"):
            (tmp / d).mkdir(parents=True, exist_ok=True)
        _write_cpu_files(tmp, os.cpu_count() or 1)
        (tmp / "etc").mkdir(exist_ok=True)
        (tmp / "etc/ld.so.cache").write_bytes(b"")  # keep the host's x86 cache out of the loader's way
        say(progress, "byte-compiling the standard library")
        _compile_stdlib(tmp, qemu)
        if root.exists():
            shutil.rmtree(root)
        tmp.rename(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for stale in [
        *(p for p in wheels_dir.glob("*.whl") if not wanted_wheel(p.name, reqs)),
        *(p for p in (downloads / "debs").glob("*.deb") if p not in debs),
    ]:
        stale.unlink()  # left by an older recipe
    download_bytes = sum(p.stat().st_size for p in debs) + sum(
        p.stat().st_size for p in wheels_dir.glob("*.whl") if wanted_wheel(p.name, reqs)
    )
    marker = {
        "recipe": recipe,
        "debian_packages": pins,
        "wheels": sorted(p.name for p in wheels_dir.glob("*.whl") if wanted_wheel(p.name, reqs)),
        "download_bytes": download_bytes,
        "root_bytes": _du(root),
        "prepare_seconds": round(time.monotonic() - started, 1),
        "ncpu": os.cpu_count() or 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp_marker = root / (MARKER + ".tmp")
    tmp_marker.write_text(json.dumps(marker, indent=2) + "\n")
    tmp_marker.rename(root / MARKER)
    say(progress, f"ready: {root} ({marker['root_bytes'] / 1e6:.0f} MB, {marker['prepare_seconds']} s)")
    return root


def _du(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def _compile_stdlib(root: Path, qemu: str | os.PathLike | None) -> None:
    """Debian compiles the stdlib at install time; do it here (host 3.11 makes the same .pyc)."""
    lib = root / "usr/lib/python3.11"
    if sys.version_info[:2] == (3, 11):
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", "-j", "1", "-x", r"lib2to3|test/", str(lib)],
            check=False,
            capture_output=True,
        )
    else:
        run_guest(root, ["-m", "compileall", "-q", "-x", r"lib2to3|test/", str(lib)], qemu=qemu, capture_output=True)
