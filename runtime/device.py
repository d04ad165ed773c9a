"""An emulated ARM64 phone userland, and CPU profiles for desktop timing.

``prepare()`` builds a Debian arm64 userland in a cache folder without root filesystem
tricks (no chroot, no binfmt registration, no foreign architecture added to the host's dpkg):

* Python 3.11 and the libraries it needs are Debian bookworm arm64 packages, resolved and
  fetched by apt itself with a private configuration (``Dir::State``, ``Dir::Cache``,
  ``APT::Architectures=arm64``, a private sources list), then unpacked with ``dpkg -x``;
* numpy, onnxruntime and (optionally) executorch are the aarch64 wheels from PyPI, installed
  with ``pip install --platform manylinux..._aarch64 --target ROOT/site``;
* programs run as ``qemu-aarch64-static -L ROOT ROOT/usr/bin/python3.11 ...``.

qemu's ``-L`` prefix is looked up first for every absolute path the program opens, so the
root also carries an ARM ``/proc/cpuinfo`` and ``/sys/devices/system/cpu/{possible,present,
online}``: onnxruntime's aarch64 build dies with SIGSEGV at import when it reads the host's.

ExecuTorch's Python runtime (``executorch.extension.pybindings``) links libtorch and takes
and returns ``torch.Tensor``, so running a ``.pte`` needs torch in the userland, and the very
torch release the bindings were compiled against (they inline libtorch's struct layouts: a
mismatch fails with "tensor does not have a device"). PyPI's aarch64 torch wheels from 2.11
on are CUDA builds (libtorch links the CUDA 13 libraries, gigabytes of NVIDIA wheels);
2.10.0 is the newest CPU-only one, and ExecuTorch 1.1.0 is the release built against it. So
the userland gets ExecuTorch 1.1.0 on torch 2.10.0 (``EXECUTORCH_AARCH64``,
``TORCH_AARCH64``) whatever the host exports with; it runs ``.pte`` files written by newer
exporters as long as they use no newer operator or format feature. Call ``executorch_bindings()`` there: it imports torch and the bindings
module directly, skipping ``portable_lib``, whose ``executorch.exir`` import pulls the whole
exporter.

Instruction counts: Debian's static ``qemu-aarch64-static`` is built without TCG plugin
support, and Debian ships no plugin library (no ``libinsn.so``) nor the plugin header. The
dynamic ``qemu-aarch64`` of package ``qemu-user`` does load plugins, so
``count_instructions()`` builds a small counting plugin with the host C compiler and runs the
program under that binary (see ``instruction_counting_status()``).

``PROFILES`` approximate phone classes on the desktop by thread count and CPU affinity only:
clock speed, core microarchitecture, caches, memory bandwidth and thermal throttling are not
modelled, so they rank configurations rather than predict phone latency.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_CPU",
    "EXECUTORCH_AARCH64",
    "EXECUTORCH_RUNTIME_API_DEPS",
    "PROFILES",
    "SUPPORTED_ARCHES",
    "TORCH_AARCH64",
    "DeviceError",
    "DeviceProfile",
    "InstructionCount",
    "apply_profile",
    "count_instructions",
    "default_cache_dir",
    "executorch_bindings",
    "find_qemu",
    "instruction_counting_status",
    "is_prepared",
    "prepare",
    "profile",
    "run_python",
    "userland_info",
]

SUPPORTED_ARCHES = ("arm64",)
SUITE = "bookworm"
GUEST_PYTHON = "usr/bin/python3.11"
MARKER = ".lazydit-device.json"
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

# The emulated core: ARMv8.2 with dot product and fp16 (phones' big cores since 2019) and,
# unlike qemu's default "max", no SVE/SME, which phone builds of the backends rarely take and
# whose emulation in qemu 7.2 raises spurious floating point flags in numpy's OpenBLAS.
DEFAULT_CPU = "cortex-a76"

QEMU_STATIC = "qemu-aarch64-static"
QEMU_DYNAMIC = "qemu-aarch64"
QEMU_FIX = "sudo apt-get install qemu-user-static"

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


class DeviceError(RuntimeError):
    """The emulated device cannot be prepared or run; the message says how to fix it."""


# --------------------------------------------------------------------------- helpers


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(f"[device] {msg}", file=sys.stderr, flush=True)


def default_cache_dir(arch: str = "arm64") -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lazydit" / "device" / arch


def _check_arch(arch: str) -> None:
    if arch not in SUPPORTED_ARCHES:
        raise DeviceError(
            f"unsupported device architecture {arch!r}: only {', '.join(SUPPORTED_ARCHES)} "
            "(aarch64 phones, emulated with qemu-user) is supported"
        )


def _root_of(cache_dir: Path) -> Path:
    return cache_dir / "root"


def _tail(text: str | bytes | None, lines: int = 15) -> str:
    if not text:
        return ""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join(text.strip().splitlines()[-lines:])


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
        _say(progress, f"{QEMU_STATIC} missing: apt-get install -y qemu-user-static")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        done = subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "qemu-user-static"],
            check=False,
            capture_output=True,
            text=True,
            env=env,
        )
        if done.returncode != 0:
            # The package lists may be missing on a fresh machine.
            subprocess.run(["apt-get", "update"], check=False, capture_output=True, text=True, env=env)
            done = subprocess.run(
                ["apt-get", "install", "-y", "--no-install-recommends", "qemu-user-static"],
                check=False,
                capture_output=True,
                text=True,
                env=env,
            )
        found = shutil.which(QEMU_STATIC)
        if found:
            return Path(found)
        raise DeviceError(
            f"{QEMU_STATIC} is missing and installing it failed:\n{_tail(done.stderr)}\nInstall it with: {QEMU_FIX}"
        )
    raise DeviceError(f"{QEMU_STATIC} not found on PATH; install it with: {QEMU_FIX}")


# --------------------------------------------------------------------------- apt


def _debian_mirrors() -> tuple[str, str]:
    """The host's Debian mirror and security mirror (env overrides), else Debian's defaults."""
    main = os.environ.get("LAZYDIT_DEBIAN_MIRROR")
    security = os.environ.get("LAZYDIT_DEBIAN_SECURITY_MIRROR")
    uris: list[str] = []
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith(("deb ", "URIs:")):
                uris += [w for w in re.sub(r"\[.*?\]", "", line).split()[1:] if "://" in w]
    for uri in uris:
        uri = uri.rstrip("/")
        if uri.endswith("/debian-security"):
            security = security or uri
        elif uri.endswith("/debian"):
            main = main or uri
    return (main or "http://deb.debian.org/debian", security or "http://deb.debian.org/debian-security")


class _Apt:
    """apt-get with a private arm64 configuration under ``base``: the host's dpkg is untouched."""

    KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
    EXTRA_OPTIONS: tuple[str, ...] = ()  # e.g. ("-oAcquire::Retries=0",)

    def __init__(self, base: Path):
        self.base = base
        if not shutil.which("apt-get"):
            raise DeviceError("apt-get not found: preparing the device needs a Debian or Ubuntu host")
        if not self.KEYRING.is_file():
            raise DeviceError(
                f"{self.KEYRING} missing: install Debian's archive keys with: sudo apt-get install debian-archive-keyring"
            )
        for sub in ("state/lists/partial", "cache/archives/partial", "etc/sources.list.d", "etc/preferences.d"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        (base / "state/status").touch()
        main, security = _debian_mirrors()
        opts = f"[arch=arm64 signed-by={self.KEYRING}]"
        (base / "etc/sources.list").write_text(
            f"deb {opts} {main} {SUITE} main\n"
            f"deb {opts} {main} {SUITE}-updates main\n"
            f"deb {opts} {security} {SUITE}-security main\n"
        )
        self.options = [
            f"-oDir::State={base / 'state'}",
            f"-oDir::State::status={base / 'state/status'}",
            f"-oDir::Cache={base / 'cache'}",
            f"-oDir::Etc::SourceList={base / 'etc/sources.list'}",
            f"-oDir::Etc::SourceParts={base / 'etc/sources.list.d'}",
            f"-oDir::Etc::Preferences={base / 'etc/preferences'}",
            f"-oDir::Etc::PreferencesParts={base / 'etc/preferences.d'}",
            "-oAPT::Architecture=arm64",
            "-oAPT::Architectures=arm64",
            "-oAPT::Get::AllowUnauthenticated=false",
            "-oDebug::NoLocking=1",
            *self.EXTRA_OPTIONS,
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            self.options.append("-oAPT::Sandbox::User=root")

    def run(self, *args: str, cwd: Path | None = None, what: str) -> str:
        done = subprocess.run(["apt-get", *self.options, *args], check=False, capture_output=True, text=True, cwd=cwd)
        if done.returncode != 0:
            raise DeviceError(
                f"{what} failed (apt-get {' '.join(args[:3])}...):\n{_tail(done.stderr or done.stdout)}\n"
                "Check access to the Debian archive and run prepare again: finished downloads are kept."
            )
        return done.stdout

    def update(self) -> None:
        what = "fetching the Debian arm64 package lists"
        out = self.run("update", "--error-on=any", what=what)
        failed = [line for line in out.splitlines() if "Failed to fetch" in line or line.startswith("Err:")]
        if failed:  # older apt reports some failures only as warnings
            raise DeviceError(f"{what} failed:\n" + "\n".join(failed[:10]) + "\nRun prepare again to retry.")

    def resolve(self, packages: tuple[str, ...]) -> list[str]:
        """The install closure of ``packages`` on an empty arm64 system, as name=version."""
        out = self.run(
            "install",
            "--simulate",
            "--no-install-recommends",
            "-q",
            *packages,
            what="resolving the Debian arm64 packages",
        )
        pins = []
        for line in out.splitlines():
            m = re.match(r"Inst (\S+) \((\S+) ", line)
            if m:
                pins.append(f"{m.group(1).split(':')[0]}={m.group(2)}")
        if not pins:
            raise DeviceError(f"apt resolved no packages for {' '.join(packages)}:\n{_tail(out)}")
        return pins

    def download(self, pins: list[str], dest: Path) -> list[Path]:
        """Download the pinned packages into ``dest`` (apt's own download), skipping verified files."""
        dest.mkdir(parents=True, exist_ok=True)
        out = self.run("download", "--print-uris", *pins, what="listing the Debian arm64 package files")
        files, missing = [], []
        for line in out.splitlines():
            m = re.match(r"'(\S+)' (\S+) (\d+) (\w+):(\w+)", line)
            if not m:
                continue
            name, algo, digest = m.group(2), m.group(4).lower(), m.group(5)
            path = dest / name
            files.append(path)
            if not (path.is_file() and _digest(path, algo) == digest):
                missing.append((path, algo, digest))
        if missing:
            todo = [p for p in pins if any(path.name.startswith(p.split("=")[0] + "_") for path, _, _ in missing)]
            self.run("download", *todo, cwd=dest, what=f"downloading {len(todo)} Debian arm64 packages")
            for path, algo, digest in missing:
                if not path.is_file() or _digest(path, algo) != digest:
                    raise DeviceError(f"downloaded {path.name} is missing or corrupt; run prepare again to retry")
        return files


def _digest(path: Path, algo: str) -> str:
    h = hashlib.new({"sha256": "sha256", "sha512": "sha512", "md5sum": "md5"}.get(algo, algo))
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- wheels


def _host_version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _wheel_requirements(with_executorch: bool, extra: tuple[str, ...] = ()) -> list[str]:
    """numpy and onnxruntime pinned to the host's versions, so host and device results compare."""
    reqs = []
    for dist in ("numpy", "onnxruntime"):
        ver = _host_version(dist)
        reqs.append(f"{dist}=={ver}" if ver else dist)
    if with_executorch:
        reqs += [f"executorch=={EXECUTORCH_AARCH64}", f"torch=={TORCH_AARCH64}", *TORCH_IMPORT_DEPS]

    def name(req: str) -> str:
        return re.sub(r"[-_.]+", "-", re.split(r"[=<>!~\[; ]", req, maxsplit=1)[0]).lower()

    have = {name(r) for r in reqs}
    return reqs + [r for r in extra if name(r) not in have]


def _pip_platform_args() -> list[str]:
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


def _pip(args: list[str], what: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise DeviceError(
            f"{what} failed (pip {' '.join(args[:2])} ...):\n{_tail(done.stderr or done.stdout)}\n"
            "Check access to PyPI and run prepare again: finished downloads are kept."
        )


# --------------------------------------------------------------------------- prepare


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
        "wheels": _wheel_requirements(with_executorch, extra),
        "executorch": with_executorch,
    }


def userland_info(root: str | os.PathLike) -> dict:
    """The marker of a prepared userland (what it holds, sizes, timings); ``{}`` if unprepared."""
    try:
        return json.loads((Path(root) / MARKER).read_text())
    except (OSError, ValueError):
        return {}


def is_prepared(root: str | os.PathLike) -> bool:
    return bool(userland_info(root))


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
    root = _root_of(cache)
    recipe = _recipe(executorch, tuple(extra_wheels))
    info = userland_info(root)
    if info and not force and info.get("recipe") == recipe:
        return root
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        _say(progress, f"building the {arch} userland in {cache}")
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per cache; a waiter finds it done
        info = userland_info(root)
        if info and not force and info.get("recipe") == recipe:
            return root
        return _build(cache, root, recipe, qemu, progress)


def _build(cache: Path, root: Path, recipe: dict, qemu, progress: bool) -> Path:
    started = time.monotonic()
    downloads = cache / "downloads"

    _say(progress, f"resolving Debian {SUITE} arm64 packages for Python 3.11")
    apt = _Apt(cache / "apt")
    apt.update()
    pins = apt.resolve(DEB_PACKAGES)
    _say(progress, f"downloading {len(pins)} Debian packages into {downloads / 'debs'}")
    debs = apt.download(pins, downloads / "debs")

    wheels_dir = downloads / "wheels"
    wheels_dir.mkdir(parents=True, exist_ok=True)
    reqs = recipe["wheels"]
    _say(progress, f"downloading aarch64 wheels: {' '.join(reqs)}")
    _pip(
        ["download", "--no-deps", "-d", str(wheels_dir), *_pip_platform_args(), *reqs],
        what="downloading the aarch64 wheels",
    )

    tmp = Path(tempfile.mkdtemp(prefix="root.partial-", dir=cache))
    try:
        _say(progress, f"unpacking {len(debs)} packages with dpkg -x")
        for deb in debs:
            done = subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=False, capture_output=True, text=True)
            if done.returncode != 0:
                raise DeviceError(
                    f"dpkg -x {deb.name} failed:\n{_tail(done.stderr)}\nDelete {deb} and run prepare again."
                )
        if not (tmp / GUEST_PYTHON).is_file():
            raise DeviceError(f"the unpacked packages hold no {GUEST_PYTHON}")
        _say(progress, "installing the wheels into site/")
        _pip(
            [
                "install",
                "--no-index",
                "--find-links",
                str(wheels_dir),
                "--no-deps",
                "--target",
                str(tmp / "site"),
                *_pip_platform_args(),
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
        _say(progress, "byte-compiling the standard library")
        _compile_stdlib(tmp, qemu)
        if root.exists():
            shutil.rmtree(root)
        tmp.rename(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for stale in [
        *(p for p in wheels_dir.glob("*.whl") if not _wanted_wheel(p.name, reqs)),
        *(p for p in (downloads / "debs").glob("*.deb") if p not in debs),
    ]:
        stale.unlink()  # left by an older recipe
    download_bytes = sum(p.stat().st_size for p in debs) + sum(
        p.stat().st_size for p in wheels_dir.glob("*.whl") if _wanted_wheel(p.name, reqs)
    )
    marker = {
        "recipe": recipe,
        "debian_packages": pins,
        "wheels": sorted(p.name for p in wheels_dir.glob("*.whl") if _wanted_wheel(p.name, reqs)),
        "download_bytes": download_bytes,
        "root_bytes": _du(root),
        "prepare_seconds": round(time.monotonic() - started, 1),
        "ncpu": os.cpu_count() or 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp_marker = root / (MARKER + ".tmp")
    tmp_marker.write_text(json.dumps(marker, indent=2) + "\n")
    tmp_marker.rename(root / MARKER)
    _say(progress, f"ready: {root} ({marker['root_bytes'] / 1e6:.0f} MB, {marker['prepare_seconds']} s)")
    return root


def _wanted_wheel(filename: str, reqs: list[str]) -> bool:
    name, _, rest = filename.partition("-")
    version = rest.split("-", 1)[0]
    norm = re.sub(r"[-_.]+", "-", name).lower()
    for req in reqs:
        rname, _, rver = req.partition("==")
        if re.sub(r"[-_.]+", "-", rname).lower() == norm and (not rver or rver == version):
            return True
    return False


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
        _run_guest(root, ["-m", "compileall", "-q", "-x", r"lib2to3|test/", str(lib)], qemu=qemu, capture_output=True)


# --------------------------------------------------------------------------- running


def _runtime_dir() -> Path:
    """This package's folder (the repo's ``runtime/``, installed as ``lazydit.runtime``)."""
    return Path(__file__).resolve().parent


def _refresh_shim(root: Path) -> Path:
    """A folder holding ``lazydit/``: a stand-in ``__init__`` and ``runtime`` linked to this package.

    One per source folder (several checkouts may share a cache), in ``ROOT/shim/<hash>``.
    """
    target = _runtime_dir()
    shim = root / "shim" / hashlib.sha256(str(target).encode()).hexdigest()[:12]
    pkg = shim / "lazydit"
    pkg.mkdir(parents=True, exist_ok=True)
    init = pkg / "__init__.py"
    text = '"""lazydit on the emulated device: only the runtime package is present."""\n'
    if not init.is_file() or init.read_text() != text:
        init.write_text(text)
    link = pkg / "runtime"
    if not (link.is_symlink() and Path(os.readlink(link)) == target):
        tmp = pkg / f".runtime.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(target, target_is_directory=True)
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


def _check_root(root: str | os.PathLike) -> Path:
    root = Path(root)
    if not is_prepared(root):
        raise DeviceError(f"{root} is not a prepared device userland; run `lazydit device prepare` first")
    return root


def _run_guest(
    root,
    args,
    *,
    qemu=None,
    env=None,
    cwd=None,
    timeout=None,
    capture_output=True,
    qemu_args=(),
    qemu_binary=None,
    shim=None,
):
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
            f"emulated run timed out after {timeout} s: {' '.join(cmd[-len(args) :])}\n{_tail(err.stderr)}"
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

    ``import lazydit.runtime.<module>`` works there (a shim package links this folder), and
    ``ROOT/site`` holds numpy, onnxruntime (and torch + executorch if prepared with them).
    The guest gets a clean environment plus ``env`` (a ``PYTHONPATH`` there is prepended;
    ``QEMU_*`` settings reach qemu: the core is ``QEMU_CPU``, ``DEFAULT_CPU`` unless given,
    ``qemu-aarch64-static -cpu help`` lists the others). Neither the working folder nor the
    script's folder goes on ``sys.path`` (``PYTHONSAFEPATH``): a checkout's ``lazydit/``
    would hide the shim. Output is captured as text unless ``capture_output=False``. A
    non-zero exit is returned, not raised; a timeout raises ``DeviceError``.
    """
    root = _check_root(root)
    shim = _refresh_shim(root)
    return _run_guest(
        root, args, qemu=qemu, env=env, cwd=cwd, timeout=timeout, capture_output=capture_output, shim=shim
    )


def executorch_bindings():
    """Inside the userland: ExecuTorch's bindings module (``_load_for_executorch`` etc.).

    Imports torch first (the bindings link libtorch) and the compiled module directly, named
    ``_portable_lib`` up to ExecuTorch 1.1 and ``_C`` after; inputs and outputs are
    ``torch.Tensor`` (``torch.from_numpy`` / ``.numpy()``). Works on the host as well.
    """
    import importlib

    import torch  # noqa: F401

    for name in ("_C", "_portable_lib"):
        try:
            return importlib.import_module(f"executorch.extension.pybindings.{name}")
        except ModuleNotFoundError:
            continue
    raise DeviceError("no ExecuTorch bindings found: prepare the device with executorch=True")


# --------------------------------------------------------------------------- instruction counting

# Our own minimal declarations of the QEMU TCG plugin API (stable since API version 1).
_PLUGIN_SOURCE = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
extern void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
extern void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                                 enum qemu_plugin_cb_flags flags, void *userdata);
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
extern void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);

#define EXPORT __attribute__((visibility("default")))
EXPORT int qemu_plugin_version = LZ_PLUGIN_API;

static uint64_t executed;
static char out_path[4096];

/* Called once per executed translation block; user-mode threads are vCPUs, hence atomics. */
static void on_exec(unsigned int vcpu, void *n) { __atomic_fetch_add(&executed, (uint64_t)(uintptr_t)n, __ATOMIC_RELAXED); }

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_exec, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)qemu_plugin_tb_n_insns(tb));
}

static void on_plugin_exit(qemu_plugin_id_t id, void *p) {
    FILE *f = out_path[0] ? fopen(out_path, "w") : stderr;
    if (!f) return;
    fprintf(f, "%llu\n", (unsigned long long)__atomic_load_n(&executed, __ATOMIC_RELAXED));
    if (f != stderr) fclose(f);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (strncmp(argv[i], "out=", 4) == 0) snprintf(out_path, sizeof out_path, "%s", argv[i] + 4);
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_plugin_exit, NULL);
    return 0;
}
"""


@dataclass
class InstructionCount:
    instructions: int  # guest (aarch64) instructions executed, all threads
    process: subprocess.CompletedProcess


def instruction_counting_status(qemu_dynamic: str | os.PathLike | None = None) -> tuple[bool, str]:
    """Whether ``count_instructions`` can run here, and why not."""
    binary = Path(qemu_dynamic) if qemu_dynamic else (shutil.which(QEMU_DYNAMIC) and Path(shutil.which(QEMU_DYNAMIC)))
    if not binary or not Path(binary).is_file():
        return False, (
            f"instruction counts need the dynamic {QEMU_DYNAMIC} (package qemu-user): {QEMU_STATIC} is built "
            "without TCG plugin support. Install it with: sudo apt-get install qemu-user"
        )
    helptext = subprocess.run([str(binary), "-h"], check=False, capture_output=True, text=True).stdout
    if "-plugin" not in helptext:
        return False, f"{binary} was built without TCG plugin support (no -plugin option)"
    if not (shutil.which("cc") or shutil.which("gcc")):
        return False, "building the counting plugin needs a C compiler: sudo apt-get install gcc"
    return True, f"{binary} with a counting plugin built by the host C compiler"


def _plugin(cache: Path, api: int) -> Path:
    digest = hashlib.sha256(_PLUGIN_SOURCE.encode()).hexdigest()[:12]
    lib = cache / f"libinsncount-{digest}-api{api}.so"
    if lib.is_file():
        return lib
    cache.mkdir(parents=True, exist_ok=True)
    src = cache / f"insncount-{digest}.c"
    src.write_text(_PLUGIN_SOURCE)
    cc = shutil.which("cc") or shutil.which("gcc")
    tmp = lib.with_suffix(f".{os.getpid()}.tmp")
    done = subprocess.run(
        [cc, "-O2", "-shared", "-fPIC", "-fvisibility=hidden", f"-DLZ_PLUGIN_API={api}", "-o", str(tmp), str(src)],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise DeviceError(f"building the instruction counting plugin failed:\n{_tail(done.stderr)}")
    os.replace(tmp, lib)
    return lib


def count_instructions(
    root: str | os.PathLike,
    args: list[str],
    env: dict | None = None,
    cwd: str | os.PathLike | None = None,
    timeout: float | None = None,
    *,
    qemu_dynamic: str | os.PathLike | None = None,
) -> InstructionCount:
    """Run ``python3.11 *args`` in the userland and count the aarch64 instructions it executes.

    Counts every guest instruction of every thread, interpreter start-up and imports included:
    subtract a baseline run (e.g. the same imports without the work) to isolate a section.
    The counting callback slows emulation down (about 1.3x on numpy's import here).
    Raises ``DeviceError`` when counting is unavailable (see ``instruction_counting_status``).
    """
    root = _check_root(root)
    ok, why = instruction_counting_status(qemu_dynamic)
    if not ok:
        raise DeviceError(why)
    binary = Path(qemu_dynamic) if qemu_dynamic else Path(shutil.which(QEMU_DYNAMIC))
    shim = _refresh_shim(root)
    plugins = root.parent / "plugins"
    last = None
    for api in (1, 2, 3, 4):
        with tempfile.TemporaryDirectory(prefix="lazydit-insn-") as tmp:
            out = Path(tmp) / "count"
            lib = _plugin(plugins, api)
            proc = _run_guest(
                root,
                args,
                env=env,
                cwd=cwd,
                timeout=timeout,
                qemu_args=["-plugin", f"{lib},out={out}"],
                qemu_binary=binary,
                shim=shim,
            )
            if out.is_file() and out.read_text().strip():
                return InstructionCount(int(out.read_text().split()[0]), proc)
            last = proc
            err = (proc.stderr or "").lower()
            if "plugin" not in err or "version" not in err:
                break  # not an API version refusal: trying another version would not help
    raise DeviceError(f"the counting plugin reported nothing (exit {last.returncode}):\n{_tail(last.stderr)}")


# --------------------------------------------------------------------------- desktop profiles


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    threads: int
    description: str


PROFILES: dict[str, DeviceProfile] = {
    p.name: p
    for p in (
        DeviceProfile(
            "flagship-2024",
            4,
            "2024 flagship (Snapdragon 8 Gen 3, Dimensity 9300, A17 Pro class): inference on its 4 big/prime cores",
        ),
        DeviceProfile(
            "midrange",
            2,
            "mid-range phone (Snapdragon 7-series, Dimensity 7000 class): 2 big cores worth of threads",
        ),
        DeviceProfile(
            "budget",
            1,
            "budget phone (Helio G / Snapdragon 4-series class): one core, the others busy or little",
        ),
    )
}


def apply_profile(name: str, pid: int = 0) -> int:
    """Pin ``pid`` (0: this process) for the profile and return the thread count to use.

    An approximation: only the thread count and CPU affinity are modelled. The process is
    pinned to the first ``threads`` CPUs it may use when the host has that many; otherwise
    its affinity is left alone and the count is capped at the CPUs available, since
    oversubscribed threads measure the host's scheduler, not the phone.
    """
    try:
        prof = PROFILES[name]
    except KeyError:
        raise DeviceError(f"unknown device profile {name!r}; known: {', '.join(PROFILES)}") from None
    if not hasattr(os, "sched_getaffinity"):
        return max(1, min(prof.threads, os.cpu_count() or 1))
    allowed = sorted(os.sched_getaffinity(pid))
    if len(allowed) >= prof.threads:
        os.sched_setaffinity(pid, allowed[: prof.threads])
        return prof.threads
    return max(1, len(allowed))


@contextlib.contextmanager
def profile(name: str):
    """``with profile("midrange") as threads:`` applies the profile and restores the affinity after."""
    saved = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        yield apply_profile(name)
    finally:
        if saved is not None:
            os.sched_setaffinity(0, saved)
