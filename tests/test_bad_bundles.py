"""One corpus of bad bundles (tests/bad_bundles.py, made from a bundle the CLI exports) through
every runtime: the Python runtime, the native runner, the Java core and the Swift package. Each
must refuse every entry with a clear message (exit 2 with an 'error:' line for the programs, a
thrown error for the cores), never crash, and still accept the good bundle it was made from."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from bad_bundles import CORPUS, make_corpus

pytestmark = pytest.mark.mobile

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tiny_bundle, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    make_corpus(tiny_bundle, out)
    return out


def _report(done: subprocess.CompletedProcess) -> dict:
    """The JSON report line (ExecuTorch's own log lines may share stdout)."""
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))


def _verify(cmd: list[str], bundle: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*cmd, "--bundle", str(bundle)], check=False, capture_output=True, text=True, timeout=600)


def _refusals(cmd: list[str], corpus: Path) -> dict[str, str]:
    """Each entry's 'error:' message; fails on any entry accepted or ended otherwise than exit 2."""
    messages, problems = {}, []
    for name in CORPUS:
        done = _verify(cmd, corpus / name)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        if done.returncode != 2 or not errors:
            problems.append(f"{name}: exit {done.returncode}, {done.stderr.strip()[-300:]!r}")
        else:
            messages[name] = errors[0][len("error: ") :]
    for name, message in messages.items():
        print(f"corpus {name}: refused: {message}")
    assert not problems, "\n".join(problems)
    return messages


PYTHON = [sys.executable, "-m", "lazydit.runtime.cli", "verify", "--backend", "executorch"]


def test_python_runtime_refuses_every_bad_bundle(corpus, tiny_bundle):
    good = _verify(PYTHON, tiny_bundle)
    assert good.returncode == 0 and _report(good)["passed"], good.stderr[-2000:]
    assert len(_refusals(PYTHON, corpus)) == len(CORPUS)


def test_native_runner_refuses_every_bad_bundle(corpus, tiny_bundle):
    from lazydit.runtime.native_runner import runner

    native = [str(runner()), "verify"]
    good = _verify(native, tiny_bundle)
    assert good.returncode == 0, good.stderr[-2000:]
    assert _report(good)["min_psnr_db"] >= 40
    assert len(_refusals(native, corpus)) == len(CORPUS)


def _core_lines(out: str, runtime: str) -> dict[str, str]:
    # (JUnit's progress dots may share a line with the first entry)
    lines = dict(re.findall(r"corpus ([\w-]+): (.*)$", out, re.MULTILINE))
    total = re.search(rf"^corpus: {runtime} refused (\d+) of (\d+)$", out, re.MULTILINE)
    assert total, out[-3000:]
    assert int(total.group(1)) == int(total.group(2)) == len(CORPUS), total.group(0)
    lines = {k: v for k, v in lines.items() if k in CORPUS}
    assert set(lines) == set(CORPUS), sorted(set(CORPUS) - set(lines))
    for name, outcome in lines.items():
        assert outcome.startswith("refused: "), f"{runtime}: {name}: {outcome}"
    return lines


def test_java_core_refuses_every_bad_bundle(corpus):
    env = dict(os.environ, LAZYDIT_CORPUS=str(corpus))
    env.pop("LAZYDIT_BUNDLE", None)
    done = subprocess.run(
        ["bash", str(ROOT / "mobile/android/core/run-tests.sh")],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    _core_lines(done.stdout, "java")
    assert done.returncode == 0, done.stdout[-4000:]


def test_swift_package_refuses_every_bad_bundle(corpus):
    env = dict(os.environ, LAZYDIT_CORPUS=str(corpus))
    env.pop("LAZYDIT_BUNDLE", None)
    done = subprocess.run(
        ["bash", str(ROOT / "mobile/ios/test-linux.sh")],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    _core_lines(done.stdout, "swift")
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
