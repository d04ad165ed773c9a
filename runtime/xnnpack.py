"""XNNPACK's run-time options for the ExecuTorch bindings: its weights cache and workspace sharing.

Every method of a bundle calls the same lowered pieces, and by default each method's delegate
packs its own copy of the piece's weights when the method loads: resident memory grows with
the number of methods (the default model's lazy bundle: 18 methods). XNNPACK's weights cache
packs each weight once per process and every delegate reads that copy. The cache is compiled
into the wheel's backend but off by default, and the Python bindings do not expose ExecuTorch's
backend-option call (``executorch::runtime::set_option``, public C++ API, in the wheel's shared
``libexecutorch.so``), so it is called here through ctypes, before a program loads. A native
runner or an app would call the same C++ function directly.

The struct layout below is ``executorch/runtime/backend/options.h`` of ExecuTorch 1.5
(``BackendOption {char key[64]; std::variant<bool, int, std::array<char, 256>> value;}``);
its size is checked, and any mismatch leaves the cache off instead of guessing.

Each delegate call also has a workspace (its activation arena). Shared globally, every piece of
every method works in one arena: a bundle's methods run one at a time, so a lazy bundle's many
methods need no more activation memory than the no-skip bundle's one.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from types import ModuleType

BACKEND = b"XnnpackBackend"
_SET_OPTION = "_ZN10executorch7runtime10set_optionEPKcNS0_4SpanINS0_13BackendOptionEEE"


class _BackendOption(ctypes.Structure):
    # key[64], the variant's 256-byte storage, its index (0 bool, 1 int, 2 string), padding
    _fields_ = [
        ("key", ctypes.c_char * 64),
        ("value", ctypes.c_ubyte * 256),
        ("index", ctypes.c_ubyte),
        ("_pad", ctypes.c_ubyte * 3),
    ]


_set_option: list = []  # the resolved C function, once


def _library(bindings: ModuleType) -> ctypes.CDLL | None:
    """The already-loaded ``libexecutorch.so`` the bindings link against (never a second copy)."""
    here = Path(bindings.__file__).resolve().parent
    for candidate in (here.parent.parent / "lib" / "libexecutorch.so", here / "libexecutorch.so"):
        if candidate.is_file():
            try:
                return ctypes.CDLL(str(candidate), mode=os.RTLD_NOLOAD | os.RTLD_GLOBAL)
            except OSError:
                return None
    return None


def _resolve(bindings: ModuleType):
    """``set_option`` with its C signature, or None when the library or the layout is not the known one."""
    if not _set_option:
        lib = _library(bindings) if ctypes.sizeof(_BackendOption) == 324 else None
        function = getattr(lib, _SET_OPTION, None) if lib is not None else None
        if function is not None:
            function.restype = ctypes.c_uint32
            function.argtypes = [ctypes.c_char_p, ctypes.POINTER(_BackendOption), ctypes.c_size_t]
        _set_option.append(function)
    return _set_option[0]


def _set(bindings: ModuleType, key: bytes, value: int, index: int) -> str:
    """One XNNPACK backend option (variant ``index``: 0 bool, 1 int); '' or why it was not set."""
    set_option = _resolve(bindings)
    if set_option is None:
        return "this ExecuTorch build exports no usable set_option"
    option = _BackendOption()
    option.key = key
    option.index = index
    ctypes.memmove(option.value, ctypes.byref(ctypes.c_int(value)), ctypes.sizeof(ctypes.c_int))
    error = set_option(BACKEND, ctypes.byref(option), 1)
    return f"set_option returned error {error:#x}" if error != 0 else ""


GLOBAL_WORKSPACE = 2  # XNNPACK's WorkspaceSharingMode::Global


def shared_workspace(bindings: ModuleType) -> str:
    """Every delegate of the programs loaded next works in one global arena; 'on' or why not."""
    why = _set(bindings, b"workspace_sharing_mode", GLOBAL_WORKSPACE, 1)
    return f"off: {why}" if why else "on"


def weights_cache(bindings: ModuleType, enabled: bool) -> str:
    """Switch XNNPACK's weights cache for the programs loaded next; returns 'on' or why it is off.

    fp16 programs load with it off: XNNPACK converts their weights when it packs them, and the
    cache, which finds a weight by the address of its unpacked data, then keys entries on
    temporary buffers (the backend warns that they "were not registered with names"); a later
    load can reuse such an address and read another weight's packed data (it crashed here)."""
    why = _set(bindings, b"weight_cache_enabled", int(enabled), 0)
    if why:
        return f"off: {why}"
    return "on" if enabled else "off"
