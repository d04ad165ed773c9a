"""Options as data: a command's settings are one dataclass whose fields carry their defaults and
help, and the command line is generated from it. The CLI and the Python API then cannot drift
apart: ``--rho-attn`` is the field ``rho_attn``, and a default exists in one place only."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any


def opt(default: Any = dataclasses.MISSING, help: str = "", choices: tuple | None = None, const: Any = None) -> Any:
    """A dataclass field with its command-line help, allowed values, and (``const``) the value a
    flag given without one takes."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "const": const})


def _base_type(hint: Any) -> Any:
    """``int | None`` -> ``int``; ``tuple[str, ...]`` stays a tuple of strings."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0]
    return hint


def _comma_list(item: type):
    def parse(text: str) -> tuple:
        try:
            return tuple(item(part.strip()) for part in text.split(",") if part.strip())
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {item.__name__}: {err}") from err

    parse.__name__ = f"list of {item.__name__}"
    return parse


def add_options(parser: argparse.ArgumentParser, config: type) -> None:
    """One ``--flag`` per option of the dataclass ``config`` (its fields made with :func:`opt`, or
    with a ``help`` in their metadata; underscores become dashes)."""
    hints = typing.get_type_hints(config)
    for f in dataclasses.fields(config):
        if not f.init or "help" not in f.metadata:
            continue  # fields without help are set by the program, not the user
        flag = "--" + f.name.replace("_", "-")
        kind = _base_type(hints[f.name])
        kwargs: dict[str, Any] = {"dest": f.name, "help": f.metadata.get("help", "").replace("%", "%%")}
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            kwargs["required"] = True
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            kwargs["default"] = default
            if default is not None and default != () and kind is not bool:
                kwargs["help"] += " (default: %(default)s)"
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is tuple:
            kwargs["type"] = _comma_list(typing.get_args(kind)[0])
            kwargs["metavar"] = "A,B,..."
            if "default" in kwargs:
                kwargs["help"] = kwargs["help"].replace("%(default)s", ",".join(map(str, kwargs["default"])))
        else:
            kwargs["type"] = kind
        if f.metadata.get("const") is not None:
            kwargs.update(nargs="?", const=f.metadata["const"])
        if f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
        parser.add_argument(flag, **kwargs)


def from_args(config: type, args: argparse.Namespace) -> Any:
    """The dataclass ``config`` filled from parsed arguments of :func:`add_options`."""
    return config(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(config) if f.init and hasattr(args, f.name)}
    )
