"""The phone code compiled and run here (`make test-mobile`): the Android app's Kotlin with -Werror
against the Android API, its R class and ExecuTorch's Java API, the app's JUnit tests on the desktop
JVM, LazyDiTKit's XCTest suite on Linux, each replaying a bundle exported by the CLI, and a check
that every compile step fails on a broken call (a build that passes whatever the code says would
prove nothing). Toolchains come from mobile/toolchains.sh (Debian packages and npm, cached)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.mobile

MOBILE = Path(__file__).resolve().parents[1] / "mobile"
ANDROID_BUILD = MOBILE / "android" / "build-here.sh"
SWIFT_TEST = MOBILE / "ios" / "test-linux.sh"


def _run(cmd: list[str], bundle: Path | None = None, timeout: float = 1800) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LAZYDIT_BUNDLE"}
    if bundle is not None:
        env["LAZYDIT_BUNDLE"] = str(bundle)
    return subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=timeout)


def _explain(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n{result.stdout[-6000:]}\n{result.stderr[-4000:]}"


def test_android_app_compiles_with_werror_and_its_junit_tests_replay_a_cli_bundle(tiny_bundle):
    result = _run(["bash", str(ANDROID_BUILD)], bundle=tiny_bundle)
    assert result.returncode == 0, _explain(result)
    kotlin = sorted((MOBILE / "android" / "app" / "src" / "main" / "java").rglob("*.kt"))
    assert len(kotlin) >= 6
    assert f"compiled {len(kotlin)} Kotlin files" in result.stdout
    ok = re.search(r"^OK \((\d+) tests\)$", result.stdout, re.MULTILINE)
    assert ok and int(ok.group(1)) >= 9, result.stdout[-3000:]
    assert f"replayed bundle {tiny_bundle} through LoadedBundle" in result.stdout


def test_swift_package_builds_and_its_xctest_suite_replays_a_cli_bundle(tiny_bundle):
    result = _run(["bash", str(SWIFT_TEST)], bundle=tiny_bundle)
    assert result.returncode == 0, _explain(result)
    out = result.stdout + result.stderr
    summary = re.findall(r"Executed (\d+) tests?, with (\d+) tests? skipped and (\d+) failures?", out)
    assert summary, out[-3000:]
    executed, skipped, failures = map(int, summary[-1])
    assert executed >= 45 and failures == 0 and skipped <= 1  # the corpus, run by test_bad_bundles.py
    assert "Test Case 'ReplayTests.testExportedBundleReplays' passed" in out, "the exported-bundle replay did not run"


# Each compile step, given one broken call; the build must fail and name what broke.
# (file under app/, text, replacement, what the compiler must say)
ANDROID_MUTANTS = {
    "executorch-java-api": (
        "src/main/java/org/lazydit/demo/ExecuTorchBackend.kt",
        "t.dataAsUnsignedByteArray",
        "t.dataAsUnsignedBytes",
        "Unresolved reference 'dataAsUnsignedBytes'",
    ),
    "android-api": (
        "src/main/java/org/lazydit/demo/Bundles.kt",
        "Build.SUPPORTED_ABIS",
        "Build.SUPPORTED_ABI",
        "Unresolved reference 'SUPPORTED_ABI'",
    ),
    "r-class": (
        "src/main/java/org/lazydit/demo/BenchmarkActivity.kt",
        "R.string.benchmark_done",
        "R.string.benchmark_finished",
        "Unresolved reference 'benchmark_finished'",
    ),
    "core-java-api": (
        "src/main/java/org/lazydit/demo/LoadedBundle.kt",
        "folder.verifyArtifacts(backend.name())",
        "folder.verifyArtifacts(backend)",
        "Argument type mismatch",
    ),
    "werror-deprecation": (
        "src/main/java/org/lazydit/demo/Bundles.kt",
        'Build.SUPPORTED_ABIS.firstOrNull() ?: "unknown ABI"',
        "Build.CPU_ABI",
        "is deprecated",
    ),
    "aapt2-resource": (
        "src/main/res/layout/activity_main.xml",
        "@string/bundle_label",
        "@string/bundle_lable",
        "resource string/bundle_lable",
    ),
}


def _mutant(tmp_path: Path, source: Path, relative: str, old: str, new: str) -> Path:
    copy = tmp_path / source.name
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns(".build", "build"))
    path = copy / relative
    text = path.read_text()
    assert text.count(old) == 1, f"{relative} no longer holds {old!r} once; update the mutant"
    path.write_text(text.replace(old, new))
    return copy


@pytest.mark.parametrize("name", sorted(ANDROID_MUTANTS))
def test_android_compile_fails_on_a_broken_call(tmp_path, name):
    relative, old, new, message = ANDROID_MUTANTS[name]
    app = _mutant(tmp_path, MOBILE / "android" / "app", relative, old, new)
    result = _run(["bash", str(ANDROID_BUILD), "--app-dir", str(app), "--compile-only"])
    assert result.returncode != 0, f"the {name} mutant compiled:\n{_explain(result)}"
    out = result.stdout + result.stderr
    assert message.lower() in out.lower(), _explain(result)
    assert Path(relative).name in out


def test_swift_build_fails_on_a_broken_call(tmp_path):
    package = _mutant(
        tmp_path,
        MOBILE / "ios",
        "Sources/LazyDiTKit/BundleRunner.swift",
        "let outs = try backend.run(method: method.name, inputs: feed)",
        "let outs = try backend.execute(method: method.name, inputs: feed)",
    )
    result = _run(["bash", str(SWIFT_TEST), "--package-dir", str(package), "--scratch", "mutant", "--build-only"])
    assert result.returncode != 0, f"the Swift mutant built:\n{_explain(result)}"
    out = result.stdout + result.stderr
    assert "BundleRunner.swift" in out and "has no member 'execute'" in out, _explain(result)
