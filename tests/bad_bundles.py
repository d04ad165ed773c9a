"""The bad-bundle corpus: one good exported bundle broken in each way a runtime must refuse
(truncated and tampered artifacts and golden files, manifests with missing or mistyped fields,
wrong shapes and dtypes, unknown slots, file names that leave the folder, NaN and huge numbers).
Every runtime (Python, the native runner, the Java and Swift cores) is run over the same corpus.

Entries marked ``redigest`` have their damage recorded in the manifest's digests, so they reach the
parser behind the digest check instead of stopping at it.

    python tests/bad_bundles.py GOOD_BUNDLE OUT     writes OUT/<entry>/ and OUT/corpus.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

Breaker = Callable[[Path], None]


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def _save(bundle: Path, manifest: dict) -> None:
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=1))


def _edit(change: Callable[[dict], None]) -> Breaker:
    def apply(bundle: Path) -> None:
        m = _manifest(bundle)
        change(m)
        _save(bundle, m)

    return apply


def _redigest(bundle: Path, relative: str) -> None:
    """Record the file's current digest and size wherever the manifest lists it."""
    data = (bundle / relative).read_bytes()
    m = _manifest(bundle)
    entries = [f for art in m["artifacts"].values() for f in art["files"]] + [m["golden"]]
    for entry in entries:
        if entry["path"] == relative:
            entry["sha256"] = hashlib.sha256(data).hexdigest()
            if "bytes" in entry:
                entry["bytes"] = len(data)
    _save(bundle, m)


def _program(bundle: Path) -> str:
    return next(f["path"] for f in _manifest(bundle)["artifacts"]["executorch"]["files"] if f["path"].endswith(".pte"))


def _truncate(relative: Callable[[Path], str], redigest: bool) -> Breaker:
    def apply(bundle: Path) -> None:
        path = bundle / relative(bundle)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        if redigest:
            _redigest(bundle, relative(bundle))

    return apply


def _flip_byte(bundle: Path) -> None:
    path = bundle / _program(bundle)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _not_a_program(bundle: Path) -> None:
    relative = _program(bundle)
    (bundle / relative).write_bytes((bundle / "manifest.json").read_bytes())
    _redigest(bundle, relative)


def _golden(bundle: Path) -> str:
    return _manifest(bundle)["golden"]["path"]


def _rewrite_golden_tensor(bundle: Path, name: str, change: Callable[[bytes, list[int]], tuple[bytes, list[int]]]):
    """Rewrite one tensor of golden.lzt in place (layout of runtime/tensorfile.py), then redigest."""
    path = bundle / _golden(bundle)
    buf = path.read_bytes()
    out, pos = bytearray(buf[:8]), 8
    (count,) = struct.unpack_from("<I", buf, 4)
    for _ in range(count):
        (n,) = struct.unpack_from("<I", buf, pos)
        key = buf[pos + 4 : pos + 4 + n].decode()
        code, ndim = struct.unpack_from("<BI", buf, pos + 4 + n)
        dims_at = pos + 4 + n + 5
        dims = list(struct.unpack_from(f"<{ndim}Q", buf, dims_at))
        (nbytes,) = struct.unpack_from("<Q", buf, dims_at + 8 * ndim)
        data_at = dims_at + 8 * ndim + 8
        data = buf[data_at : data_at + nbytes]
        if key == name:
            data, dims = change(data, dims)
        out += struct.pack("<I", n) + key.encode() + struct.pack("<BI", code, len(dims))
        out += struct.pack(f"<{len(dims)}Q", *dims) + struct.pack("<Q", len(data)) + data
        pos = data_at + nbytes
    path.write_bytes(bytes(out))
    _redigest(bundle, _golden(bundle))


def _golden_nan(bundle: Path) -> None:
    _rewrite_golden_tensor(bundle, "init/x", lambda data, dims: (struct.pack("<f", float("nan")) + data[4:], dims))


def _golden_wrong_shape(bundle: Path) -> None:
    # the same bytes under another shape: [1, 1, 8, 8] read as [1, 8, 8, 1]
    _rewrite_golden_tensor(bundle, "init/x", lambda data, dims: (data, [dims[0], *dims[2:], dims[1]]))


def _outside_program(bundle: Path) -> None:
    """The program named by a path that climbs out of the folder, with a real copy waiting there."""
    m = _manifest(bundle)
    entry = next(f for f in m["artifacts"]["executorch"]["files"] if f["path"].endswith(".pte"))
    outside = bundle.parent / f"{bundle.name}-outside.pte"
    shutil.copyfile(bundle / entry["path"], outside)
    entry["path"] = f"../{outside.name}"
    _save(bundle, m)


def _first_step_method(m: dict) -> dict:
    return m["methods"][m["steps"][0]["method"]]


def _a_skipping_step(m: dict) -> dict:
    return next(s for s in m["steps"] if s.get("skipped", 0) > 0)


CORPUS: dict[str, tuple[str, Breaker]] = {
    "program-truncated": ("model.pte cut in half", _truncate(_program, redigest=False)),
    "program-truncated-redigest": ("model.pte cut in half, digest updated", _truncate(_program, redigest=True)),
    "program-tampered": ("one byte of model.pte flipped", _flip_byte),
    "program-missing": ("model.pte deleted", lambda b: (b / _program(b)).unlink()),
    "program-not-a-program": ("model.pte replaced by the manifest's text, digest updated", _not_a_program),
    "golden-truncated": ("golden.lzt cut in half", _truncate(_golden, redigest=False)),
    "golden-truncated-redigest": ("golden.lzt cut in half, digest updated", _truncate(_golden, redigest=True)),
    "golden-wrong-shape": ("golden init/x stored as [1, 8, 8, 1], digest updated", _golden_wrong_shape),
    "golden-nan": ("golden init/x starts with a NaN, digest updated", _golden_nan),
    "manifest-not-json": ("manifest.json cut in half", lambda b: _truncate(lambda _: "manifest.json", False)(b)),
    "manifest-missing-steps": ("no 'steps' field", _edit(lambda m: m.pop("steps"))),
    "manifest-missing-decode": ("no 'decode' field", _edit(lambda m: m.pop("decode"))),
    "manifest-missing-golden-sha": ("golden without its sha256", _edit(lambda m: m["golden"].pop("sha256"))),
    "manifest-wrong-version": ("version 2", _edit(lambda m: m.update(version=2))),
    "shape-is-a-string": (
        "slots.x.shape is the string '1,1,8,8'",
        _edit(lambda m: m["slots"]["x"].update(shape="1,1,8,8")),
    ),
    "index-is-a-string": ("steps[0].index is the string '0'", _edit(lambda m: m["steps"][0].update(index="0"))),
    "inputs-is-an-object": (
        "a method's inputs is an object, not a list",
        _edit(lambda m: _first_step_method(m).update(inputs={"x": "x"})),
    ),
    "slot-unknown-dtype": ("slots.x.dtype is float64", _edit(lambda m: m["slots"]["x"].update(dtype="float64"))),
    "slot-wrong-shape": ("slots.x.shape is [1, 1, 4, 4]", _edit(lambda m: m["slots"]["x"].update(shape=[1, 1, 4, 4]))),
    "slot-negative-dim": ("slots.x.shape holds -8", _edit(lambda m: m["slots"]["x"].update(shape=[1, 1, -8, 8]))),
    "slot-huge-shape": (
        "slots.x.shape is [1, 1, 2**40, 2**40]",
        _edit(lambda m: m["slots"]["x"].update(shape=[1, 1, 2**40, 2**40])),
    ),
    "input-unknown-slot": (
        "a method reads cache:99.attn, no such slot",
        _edit(lambda m: _first_step_method(m)["inputs"].append({"name": "ghost", "source": "cache:99.attn"})),
    ),
    "output-unknown-slot": (
        "a method writes cache:99.mlp, no such slot",
        _edit(lambda m: _first_step_method(m)["outputs"][0].update(target="cache:99.mlp")),
    ),
    "step-unknown-method": ("a step names method step_99", _edit(lambda m: m["steps"][1].update(method="step_99"))),
    "steps-count-mismatch": (
        "sampler.steps says one more step",
        _edit(lambda m: m["sampler"].update(steps=m["sampler"]["steps"] + 1)),
    ),
    "path-traversal-program": ("the program's path is ../<file> (a real copy is there)", _outside_program),
    "path-absolute-golden": ("golden.path is /etc/passwd", _edit(lambda m: m["golden"].update(path="/etc/passwd"))),
    "path-traversal-golden": (
        "golden.path is ../../golden.lzt",
        _edit(lambda m: m["golden"].update(path="../../golden.lzt")),
    ),
    "scalar-nan": ("a step's alpha is NaN", _edit(lambda m: _a_skipping_step(m)["scalars"].update(alpha=float("nan")))),
    "scalar-huge": (
        "a step's t is 1e300 (beyond float32)",
        _edit(lambda m: _a_skipping_step(m)["scalars"].update(t=1e300)),
    ),
    "scalar-infinite": (
        "a step's alpha_prev is Infinity",
        _edit(lambda m: _a_skipping_step(m)["scalars"].update(alpha_prev=float("inf"))),
    ),
}


def make_corpus(good: Path, out: Path) -> list[dict]:
    """Every entry of CORPUS as a broken copy of ``good`` under ``out``, listed in out/corpus.json."""
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, (what, breaker) in CORPUS.items():
        target = out / name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(good, target)
        breaker(target)
        entries.append({"name": name, "what": what})
    (out / "corpus.json").write_text(json.dumps(entries, indent=1))
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("good", type=Path, help="a bundle exported by `lazydit export` (executorch format)")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    entries = make_corpus(args.good, args.out)
    print(f"wrote {len(entries)} bad bundles to {args.out}")


if __name__ == "__main__":
    main()
