"""Torch-free entry point for running bundles: ``python -m lazydit.runtime.cli verify|bench``.

``lazydit verify`` and ``lazydit bench`` call the same functions; this module exists so the
emulated ARM64 userland, which has numpy and the backends but not the exporter, can run them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from .bench import BenchConfig, bench
from .bundle import Bundle, BundleError
from .tensorfile import TensorFileError


def verify_bundle(bundle: str, backend: str, threads: int | None = None) -> dict:
    from .backends import create_backend
    from .loop import verify
    from .native_runner import BACKEND as NATIVE
    from .native_runner import native_verify

    if backend == NATIVE:
        return native_verify(bundle, threads)

    result = verify(create_backend(backend, Bundle.load(bundle), threads))
    result["bundle"] = bundle
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lazydit.runtime.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="replay a bundle's golden vectors")
    b = sub.add_parser("bench", help="time a bundle (and a baseline, interleaved)")
    defaults = BenchConfig()
    for p in (v, b):
        p.add_argument("--bundle", required=True)
        p.add_argument("--backend", default=defaults.backend)
        p.add_argument("--threads", type=int, default=defaults.threads)
    b.add_argument("--baseline")
    b.add_argument("--warmup", type=int, default=defaults.warmup)
    b.add_argument("--runs", type=int, default=defaults.runs)
    b.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=defaults.memory,
        help=next(f for f in dataclasses.fields(BenchConfig) if f.name == "memory").metadata["help"],
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "verify":
            result = verify_bundle(args.bundle, args.backend, args.threads)
        else:
            config = BenchConfig(args.backend, args.threads, args.warmup, args.runs, memory=args.memory)
            result = bench(args.bundle, config, args.baseline)
    except (BundleError, TensorFileError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0 if result.get("passed", True) else 1


if __name__ == "__main__":
    sys.exit(main())
