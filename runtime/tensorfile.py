"""The bundle's tensor file format (``.lzt``), readable without numpy on a phone.

Little-endian throughout::

    magic   4 bytes  b"LZT1"
    count   u32      number of tensors
    then per tensor:
      name_len u32, name (UTF-8, name_len bytes)
      dtype    u8    0 = float32, 1 = int64, 2 = uint8, 3 = int32, 4 = float16
      ndim     u32,  dims u64 x ndim
      nbytes   u64,  data (row-major, nbytes bytes)

Tensors keep their insertion order. The Java and Swift cores parse exactly this layout.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

MAGIC = b"LZT1"
DTYPES = {0: np.dtype("<f4"), 1: np.dtype("<i8"), 2: np.dtype("u1"), 3: np.dtype("<i4"), 4: np.dtype("<f2")}


class TensorFileError(ValueError):
    pass


def write_tensors(path: str | Path, tensors: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:
        f.write(MAGIC + struct.pack("<I", len(tensors)))
        for name, value in tensors.items():
            arr = np.ascontiguousarray(value)
            code = _code(arr.dtype, name)
            arr = arr.astype(DTYPES[code], copy=False)
            raw = name.encode()
            f.write(struct.pack("<I", len(raw)) + raw)
            f.write(struct.pack("<BI", code, arr.ndim) + struct.pack(f"<{arr.ndim}Q", *arr.shape))
            data = arr.tobytes()
            f.write(struct.pack("<Q", len(data)) + data)


def _code(dtype: np.dtype, name: str) -> int:
    for code, known in DTYPES.items():
        if np.dtype(dtype).kind == known.kind and np.dtype(dtype).itemsize == known.itemsize:
            return code
    raise TensorFileError(f"tensor {name!r}: dtype {dtype} is not storable (float32, float16, int64, int32, uint8)")


def read_tensors(path: str | Path) -> dict[str, np.ndarray]:
    buf = Path(path).read_bytes()
    if buf[:4] != MAGIC:
        raise TensorFileError(f"{path}: not a lazydit tensor file (bad magic)")
    pos = 4
    out: dict[str, np.ndarray] = {}
    try:
        (count,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        for _ in range(count):
            (n,) = struct.unpack_from("<I", buf, pos)
            pos += 4
            name = buf[pos : pos + n].decode()
            pos += n
            code, ndim = struct.unpack_from("<BI", buf, pos)
            pos += 5
            dims = struct.unpack_from(f"<{ndim}Q", buf, pos)
            pos += 8 * ndim
            (nbytes,) = struct.unpack_from("<Q", buf, pos)
            pos += 8
            if code not in DTYPES:
                raise TensorFileError(f"{path}: tensor {name!r} has unknown dtype code {code}")
            if pos + nbytes > len(buf):
                raise TensorFileError(f"{path}: truncated inside tensor {name!r}")
            out[name] = np.frombuffer(
                buf, dtype=DTYPES[code], count=nbytes // DTYPES[code].itemsize, offset=pos
            ).reshape(dims)
            pos += nbytes
    except struct.error as err:
        raise TensorFileError(f"{path}: truncated ({err})") from err
    return out
