"""Configurations as TOML: the `config.toml` a job writes into its folder, read back.

A configuration is a set of frozen dataclasses (the training setting, the method's
settings), one TOML table each, named by `section`; a nested dataclass (`Lanczos`
inside `MatrixFreeSettings`) is a sub-table and `None` (a default chosen at run time)
is left out. `jacscope train-jacobian --config DIR/config.toml` reproduces the run.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jacscope._extras import require
from jacscope._stages import plain


def _table(instance: Any) -> dict[str, Any]:
    table = {}
    for field in dataclasses.fields(instance):
        value = getattr(instance, field.name)
        if dataclasses.is_dataclass(value):
            table[field.name] = _table(value)
        elif value is not None:
            table[field.name] = plain(value)
    return table


def to_toml(sections: Mapping[str, Any]) -> str:
    """The TOML text of `{section: dataclass instance or plain value}`."""
    document = {
        name: _table(value) if dataclasses.is_dataclass(value) else plain(value)
        for name, value in sections.items()
    }
    return require("tomli_w", "writing a job's config.toml").dumps(document)


def read_toml(path: str | os.PathLike) -> dict[str, Any]:
    """The tables of a TOML file; a missing or malformed one is a `ValueError` naming it."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"the configuration file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"the configuration file {path} is not valid TOML ({err})") from None


def build(cls: type, values: Mapping[str, Any], where: str = "") -> Any:
    """An instance of the dataclass `cls` from a table (nested dataclasses from
    sub-tables); an unknown key is a `ValueError` naming it and the closest field."""
    hints = typing.get_type_hints(cls)
    names = [field.name for field in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(names)}"
            raise ValueError(f"unknown setting {key!r}{f' in {where}' if where else ''}{hint}")
        kind = hints[key]
        if dataclasses.is_dataclass(kind) and isinstance(value, Mapping):
            value = build(kind, value, f"{where}.{key}" if where else key)
        kwargs[key] = value
    return cls(**kwargs)
