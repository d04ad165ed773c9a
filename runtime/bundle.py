"""Loading and validating a bundle: the manifest against its schema and its own cross
references, every artifact against its sha256, and the golden vectors."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .tensorfile import read_tensors

SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")
MANIFEST_VERSION = 1


class BundleError(ValueError):
    """A bundle that cannot be run; the message names the problem and the fix."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def validate_manifest(manifest: dict) -> None:
    """Schema, then the references the schema cannot express."""
    try:
        import jsonschema
    except ImportError:  # the emulated device may not carry it; the checks below still run
        jsonschema = None
    if jsonschema is not None:
        schema = json.loads(SCHEMA_PATH.read_text())
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(manifest), key=lambda e: list(e.path))
        if errors:
            err = errors[0]
            where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
            raise BundleError(f"manifest does not match the bundle schema at {where}: {err.message}")
    elif manifest.get("format") != "lazydit-bundle" or manifest.get("version") != MANIFEST_VERSION:
        raise BundleError("not a lazydit bundle manifest (version 1)")
    slots, methods = manifest["slots"], manifest["methods"]
    if manifest["decode"] not in methods:
        raise BundleError(f"decode method {manifest['decode']!r} is not among the methods")
    if len(manifest["steps"]) != manifest["sampler"]["steps"]:
        raise BundleError(f"manifest lists {len(manifest['steps'])} steps, the sampler {manifest['sampler']['steps']}")
    for name, method in methods.items():
        for out in method["outputs"]:
            if out["target"] not in slots:
                raise BundleError(f"method {name}: output {out['name']} targets unknown slot {out['target']!r}")
    for step in manifest["steps"]:
        if step["method"] not in methods:
            raise BundleError(f"step {step['index']} names unknown method {step['method']!r}")
        for inp in methods[step["method"]]["inputs"]:
            if inp["source"] not in slots and inp["source"] not in step["scalars"]:
                raise BundleError(
                    f"step {step['index']}: input {inp['name']} reads {inp['source']!r}, "
                    "which is neither a slot nor one of the step's scalars"
                )
    for fmt, art in manifest["artifacts"].items():
        missing = set(methods) - set(art["methods"])
        if missing:
            raise BundleError(f"{fmt} artifact lacks methods {sorted(missing)}")
    _check_numbers(manifest)


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_numbers(manifest: dict) -> None:
    """Scalars are fed as float32: NaN, infinities (JSON's NaN and Infinity tokens) and values past
    float32 would reach the graphs as garbage; slot shapes must be sizes a phone can hold."""
    for step in manifest["steps"]:
        for name, value in step["scalars"].items():
            if not np.isfinite(value) or abs(value) > FLOAT32_MAX:
                raise BundleError(f"step {step['index']}: scalar {name} = {value} is not a finite float32")
    for name, slot in manifest["slots"].items():
        if any(d < 0 for d in slot["shape"]) or np.prod(slot["shape"], dtype=np.float64) > 2**34:
            raise BundleError(f"slot {name} has shape {slot['shape']}, not a tensor a runtime can hold")


def inside(root: Path, relative: str) -> Path:
    """A file the manifest names, refused unless it lies inside the bundle folder (no absolute
    path, no '..', no link that leads out): a bundle must never make a runtime read elsewhere."""
    path = Path(relative)
    if path.is_absolute() or ".." in path.parts or "\\" in relative or not relative:
        raise BundleError(f"manifest names {relative!r}, which is not a file name inside the bundle folder")
    resolved, base = (root / path).resolve(), root.resolve()
    if base not in resolved.parents:
        raise BundleError(f"manifest names {relative!r}, which resolves outside the bundle folder")
    return root / path


@dataclass
class Bundle:
    root: Path
    manifest: dict

    @classmethod
    def load(cls, root: str | Path, verify_hashes: bool = True) -> Bundle:
        root = Path(root)
        path = root / "manifest.json"
        if not path.is_file():
            raise BundleError(f"{root} is not a bundle: no manifest.json (make one with `lazydit export`)")
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise BundleError(f"{path}: not JSON ({err})") from err
        validate_manifest(manifest)
        bundle = cls(root, manifest)
        if verify_hashes:
            bundle.verify_files()
        return bundle

    def files(self, fmt: str | None = None) -> list[dict]:
        arts = self.manifest["artifacts"]
        chosen = [arts[fmt]] if fmt else arts.values()
        entries = [f for art in chosen for f in art["files"]]
        if fmt is None:
            entries.append({"path": self.manifest["golden"]["path"], "sha256": self.manifest["golden"]["sha256"]})
        return entries

    def verify_files(self, fmt: str | None = None) -> None:
        for entry in self.files(fmt):
            path = inside(self.root, entry["path"])
            if not path.is_file():
                raise BundleError(f"artifact {entry['path']} is missing from {self.root}; re-export the bundle")
            if sha256(path) != entry["sha256"]:
                raise BundleError(
                    f"artifact {entry['path']} does not match its sha256 in the manifest "
                    "(modified or corrupt); re-export the bundle"
                )

    def artifact(self, fmt: str) -> dict:
        if fmt not in self.manifest["artifacts"]:
            raise BundleError(
                f"this bundle has no {fmt} artifact (it has {sorted(self.manifest['artifacts'])}); "
                f"export it with --formats {fmt}"
            )
        return self.manifest["artifacts"][fmt]

    @property
    def methods(self) -> dict:
        return self.manifest["methods"]

    @property
    def steps(self) -> list[dict]:
        return self.manifest["steps"]

    def golden(self) -> dict[str, np.ndarray]:
        """The golden vectors, refused if any holds a NaN or an infinity (they are the reference)."""
        path = self.manifest["golden"]["path"]
        tensors = read_tensors(inside(self.root, path))
        for name, value in tensors.items():
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise BundleError(f"{path}: tensor {name} holds a NaN or infinity; re-export the bundle")
        return tensors

    def initial_state(self, golden: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        g = golden if golden is not None else self.golden()
        state = {}
        for slot in ("x", "y", "cfg_scale"):
            value, spec = g.get(f"init/{slot}"), self.manifest["slots"][slot]
            if value is None or value.dtype != np.dtype(spec["dtype"]) or list(value.shape) != spec["shape"]:
                have = "missing" if value is None else f"{value.dtype}{list(value.shape)}"
                raise BundleError(f"golden init/{slot} is {have}, slot {slot} holds {spec['dtype']}{spec['shape']}")
            state[slot] = value
        return state

    @property
    def lazy_steps(self) -> list[int]:
        return [s["index"] for s in self.steps if s.get("skipped", 0) > 0]
