"""The layer rules of DESIGN.md hold as import-linter contracts, and the contracts can fail."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT), "--no-cache"], cwd=cwd, capture_output=True, text=True, env={"PYTHONPATH": str(cwd)}, check=False
    )


def test_every_layer_contract_is_kept():
    proc = _lint(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "4 kept, 0 broken" in proc.stdout


def test_a_runtime_module_importing_the_exporter_breaks_the_contracts(tmp_path):
    """A copy of the tree where the runtime loop imports the exporter: lint-imports must fail and
    name the import (the same check, pointed at a tree that breaks it)."""
    for folder in ("lazydit", "export", "runtime", "device"):
        shutil.copytree(ROOT / folder, tmp_path / folder, symlinks=True, ignore=shutil.ignore_patterns("weights"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    loop = tmp_path / "runtime" / "loop.py"
    loop.write_text(loop.read_text() + "\nfrom lazydit.export import bundle as _forbidden  # noqa\n")
    proc = _lint(tmp_path)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "lazydit.runtime is not allowed to import lazydit.export" in proc.stdout
    assert "lazydit.runtime.loop -> lazydit.export.bundle" in proc.stdout
