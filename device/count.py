"""Counting the aarch64 instructions a guest program executes: deterministic, unlike emulated timings.

Debian's static ``qemu-aarch64-static`` is built without TCG plugin support, and Debian ships no plugin
library (no ``libinsn.so``) nor the plugin header. The dynamic ``qemu-aarch64`` of package ``qemu-user`` does
load plugins, so ``count_instructions()`` builds the small counting plugin ``count_plugin.c`` with the host C
compiler and runs the program under that binary (see ``instruction_counting_status()``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import DeviceError, tail
from .guest import QEMU_DYNAMIC, QEMU_STATIC, refresh_shim, run_guest
from .marker import require_prepared

__all__ = ["InstructionCount", "count_instructions", "count_native", "instruction_counting_status"]

PLUGIN_SOURCE = Path(__file__).with_name("count_plugin.c")


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
    """The plugin built for API version ``api``, cached by source hash so an edited source rebuilds."""
    digest = hashlib.sha256(PLUGIN_SOURCE.read_bytes()).hexdigest()[:12]
    lib = cache / f"libinsncount-{digest}-api{api}.so"
    if lib.is_file():
        return lib
    cache.mkdir(parents=True, exist_ok=True)
    cc = shutil.which("cc") or shutil.which("gcc")
    tmp = lib.with_suffix(f".{os.getpid()}.tmp")
    cmd = [cc, "-O2", "-shared", "-fPIC", "-fvisibility=hidden", f"-DLZ_PLUGIN_API={api}", "-o", str(tmp)]
    done = subprocess.run([*cmd, str(PLUGIN_SOURCE)], check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise DeviceError(f"building the instruction counting plugin failed:\n{tail(done.stderr)}")
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
    root = require_prepared(root)
    ok, why = instruction_counting_status(qemu_dynamic)
    if not ok:
        raise DeviceError(why)
    binary = Path(qemu_dynamic) if qemu_dynamic else Path(shutil.which(QEMU_DYNAMIC))
    shim = refresh_shim(root)

    def run(plugin_args: list[str]) -> subprocess.CompletedProcess:
        return run_guest(
            root, args, env=env, cwd=cwd, timeout=timeout, qemu_args=plugin_args, qemu_binary=binary, shim=shim
        )

    return _counted(root.parent / "plugins", run)


def count_native(
    program: str | os.PathLike,
    args: list[str],
    sysroot: str | os.PathLike,
    plugins: str | os.PathLike,
    cpu: str,
    timeout: float | None = None,
) -> InstructionCount:
    """Run an aarch64 program (no Python: e.g. the native runner) with ``sysroot`` as qemu's ``-L``
    prefix and count the instructions it executes, as ``count_instructions`` does for the userland."""
    ok, why = instruction_counting_status()
    if not ok:
        raise DeviceError(why)
    binary = shutil.which(QEMU_DYNAMIC)

    def run(plugin_args: list[str]) -> subprocess.CompletedProcess:
        cmd = [binary, "-L", str(sysroot), "-cpu", cpu, *plugin_args, str(program), *args]
        return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)

    return _counted(Path(plugins), run)


def _counted(plugins: Path, run) -> InstructionCount:
    """``run(qemu plugin arguments)`` with the counting plugin of the first API version qemu accepts."""
    last = None
    for api in (1, 2, 3, 4):
        with tempfile.TemporaryDirectory(prefix="lazydit-insn-") as tmp:
            out = Path(tmp) / "count"
            lib = _plugin(plugins, api)
            proc = run(["-plugin", f"{lib},out={out}"])
            if out.is_file() and out.read_text().strip():
                return InstructionCount(int(out.read_text().split()[0]), proc)
            last = proc
            err = (proc.stderr or "").lower()
            if "plugin" not in err or "version" not in err:
                break  # not an API version refusal: trying another version would not help
    raise DeviceError(f"the counting plugin reported nothing (exit {last.returncode}):\n{tail(last.stderr)}")
