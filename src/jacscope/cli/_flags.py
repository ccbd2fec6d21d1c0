"""Command-line flags generated from configuration dataclasses, so a setting is declared once.

`add_flags(parser, "training", TrainingConfig)` adds one flag per field: its name from the
field (`hidden_layers` -> `--hidden-layers`; a nested dataclass's fields under its name:
`--lanczos-depth`), its type and choices from the annotation, its help from the class's
`**Fields:**` docstring list and its default shown once. A flag's value is checked as it
is parsed; the dataclass checks the rest when it is built. Defaults are not filled in by
the parser, so `given(args)` is exactly what the user typed: the values of a
configuration file (`--config`) are overridden by it, and a flag that does not apply to
the chosen mode can be named and refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

_BULLET = re.compile(r"^\s*- ((?:`\w+`(?:, )?)+): (.*)$")


def field_help(cls: type) -> dict[str, str]:
    """The `**Fields:**` list of a dataclass's docstring, field -> text (backticks
    removed; a bullet naming several fields gives each the same text)."""
    helps: dict[str, str] = {}
    names: list[str] = []
    for line in (cls.__doc__ or "").splitlines():
        match = _BULLET.match(line)
        if match:
            names = re.findall(r"`(\w+)`", match.group(1))
            for name in names:
                helps[name] = match.group(2)
        elif names and line.strip() and not line.strip().startswith("**"):
            for name in names:
                helps[name] += " " + line.strip()
        else:
            names = []
    return {name: text.replace("`", "") for name, text in helps.items()}


def flag_name(path: str) -> str:
    """`"matrix_free.lanczos.depth"` -> `"--lanczos-depth"` (the section is not part of it)."""
    return "--" + path.split(".", 1)[1].replace(".", "-").replace("_", "-")


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, received {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, received {text!r}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, received {text!r}") from None


def _parser_of(kind: Any) -> tuple[Callable[[str], Any], list | None, str]:
    """(parse, choices, metavar) of an annotation."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _parser_of(args[0])
    if origin is Literal:
        return str, list(args), "{" + ",".join(map(str, args)) + "}"
    if origin in (typing.Union, types.UnionType):  # int | Literal["sqrt", "stored"]
        words = [w for a in args if typing.get_origin(a) is Literal for w in typing.get_args(a)]

        def parse(text: str) -> Any:
            if text in words:
                return text
            try:
                return int(text)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"expected {', '.join(words)} or an integer, received {text!r}"
                ) from None

        return parse, None, "|".join(words) + "|N"
    if origin is tuple:
        item = _parser_of(args[0])[0]

        def parse_list(text: str) -> tuple:
            return tuple(item(part.strip()) for part in text.split(",") if part.strip())

        return parse_list, None, "A,B,..."
    if kind is int:
        return _integer, None, "N"
    if kind is float:
        return _finite, None, "X"
    return str, None, "TEXT"


def add_folder_flags(parser: argparse.ArgumentParser) -> None:
    """`--out DIR`, `--config FILE` and `--force`: the flags of every command that runs a
    job into a folder."""
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="a config.toml (as a run writes into its folder); flags override its values",
    )
    parser.add_argument("--force", action="store_true", help="discard DIR's results, start over")


def add_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, path: str, cls: type
) -> None:
    """Add a flag for every field of the dataclass `cls`, its dest `"path.field"`; a
    nested dataclass's fields are added under its own path (`--lanczos-depth`)."""
    hints, helps, defaults = typing.get_type_hints(cls), field_help(cls), cls()
    for field in dataclasses.fields(cls):
        dest, kind = f"{path}.{field.name}", hints[field.name]
        if dataclasses.is_dataclass(kind):
            add_flags(parser, dest, kind)
        else:
            _add_one(parser, dest, kind, getattr(defaults, field.name), helps.get(field.name, ""))


def _add_one(parser, dest: str, kind: Any, default: Any, text: str) -> None:
    shown = "" if default in (None, False) else f" (default: {_shown(default)})"
    if kind is bool:
        parser.add_argument(
            flag_name(dest), dest=dest, action="store_true", default=argparse.SUPPRESS, help=text
        )
        return
    parse, choices, metavar = _parser_of(kind)
    parser.add_argument(
        flag_name(dest),
        dest=dest,
        type=parse,
        choices=choices,
        metavar=metavar,
        default=argparse.SUPPRESS,
        help=(text + shown).replace("%", "%%"),
    )


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def given(args: argparse.Namespace, section: str) -> dict[str, Any]:
    """The flags of `section` the user gave, as a nested table (`{"lanczos": {"depth": 90}}`)."""
    table: dict[str, Any] = {}
    for dest, value in vars(args).items():
        parts = dest.split(".")
        if parts[0] != section or len(parts) < 2:
            continue
        node = table
        for part in parts[1:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return table


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`base` with `override` on top, sub-tables merged."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def given_flags(args: argparse.Namespace, section: str, within: str = "") -> list[str]:
    """The flag names the user gave in `section` (under the sub-table `within`)."""
    prefix = f"{section}.{within}." if within else f"{section}."
    return sorted(flag_name(dest) for dest in vars(args) if dest.startswith(prefix))
