"""apt-get with a private arm64 configuration: Debian's own resolver and downloader, the host's dpkg untouched.

Python 3.11 and the libraries it needs are Debian bookworm arm64 packages, resolved and fetched by apt itself
with a private configuration (``Dir::State``, ``Dir::Cache``, ``APT::Architectures=arm64``, a private sources
list), so no foreign architecture is added to the host; the builder then unpacks them with ``dpkg -x``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from .errors import DeviceError, tail

__all__ = ["SUITE", "Apt"]

SUITE = "bookworm"


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


class Apt:
    """apt-get with a private arm64 configuration under ``base``: the host's dpkg is untouched."""

    KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
    EXTRA_OPTIONS: tuple[str, ...] = ()  # e.g. ("-oAcquire::Retries=0",)

    def __init__(self, base: Path):
        self.base = base
        if not shutil.which("apt-get"):
            raise DeviceError("apt-get not found: preparing the device needs a Debian or Ubuntu host")
        if not self.KEYRING.is_file():
            raise DeviceError(
                f"{self.KEYRING} missing: install Debian's archive keys with: "
                "sudo apt-get install debian-archive-keyring"
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
                f"{what} failed (apt-get {' '.join(args[:3])}...):\n{tail(done.stderr or done.stdout)}\n"
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
            raise DeviceError(f"apt resolved no packages for {' '.join(packages)}:\n{tail(out)}")
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
