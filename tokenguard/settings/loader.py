"""Typed settings from TOML tables and environment variables, with every problem reported at once.

A settings class is a frozen dataclass; its annotations say how a value is read (``str``, ``int``,
``float``, ``bool``, ``tuple[str, ...]``, ``dict``, or ``X | None``) and its defaults are the defaults.
:func:`read_table` checks a table against the class, applies environment overrides, and records every
problem in a :class:`Problems` list instead of stopping at the first, so ``check-config`` and a reload
report them all. tokenguard's config and the mock IdP's share this loader and its :class:`ConfigError`.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeVar, cast

T = TypeVar("T")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a configuration: where (file or variable), which key, and what."""

    source: str
    key: str
    problem: str

    def __str__(self) -> str:
        return f"{self.source}: {self.key}: {self.problem}"


class ConfigError(ValueError):
    """One or more configuration problems; ``str()`` has one ``FILE: key: problem`` line each.

    ``source``, ``key`` and ``problem`` describe the first problem; ``problems`` lists them all.
    """

    def __init__(self, source: str, key: str, problem: str, *, more: tuple[Problem, ...] = ()) -> None:
        self.problems = (Problem(source, key, problem), *more)
        super().__init__("\n".join(str(p) for p in self.problems))
        self.source, self.key, self.problem = source, key, problem

    @classmethod
    def of(cls, problems: list[Problem]) -> ConfigError:
        first, *rest = problems
        return cls(first.source, first.key, first.problem, more=tuple(rest))


class Problems:
    """Collects problems while a whole configuration is read."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, source: str, key: str, problem: str) -> None:
        self.items.append(Problem(source, key, problem))

    def check(self, condition: bool, source: str, key: str, problem: str) -> bool:
        if not condition:
            self.add(source, key, problem)
        return condition

    def __bool__(self) -> bool:
        return bool(self.items)

    def __iter__(self) -> Iterator[Problem]:
        return iter(self.items)

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError.of(self.items)


def read_secret(value: str, file: str, source: str, key: str) -> str:
    """A secret from the config value or, preferably, from a file (so it stays out of the config)."""
    if file:
        try:
            return Path(file).read_text().strip()
        except OSError as exc:
            raise ConfigError(source, key + "_file", f"cannot read: {exc.strerror}") from None
    return value


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A TOML file as a dict; an unreadable or invalid file is a :class:`ConfigError` naming it."""
    source = str(path)
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(source, "-", "file not found") from None
    except IsADirectoryError:
        raise ConfigError(source, "-", "is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(source, "-", f"cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "-", f"not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(source, "-", "not valid TOML: not UTF-8") from None


@cache
def _kinds(cls: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _strip_optional(kind: Any) -> tuple[Any, bool]:
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        return args[0], True
    return kind, False


def _name(kind: Any) -> str:
    origin = typing.get_origin(kind)
    if origin is tuple:
        return "a list"
    if origin is dict or kind is dict:
        return "a table"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(kind, str(kind))


def coerce(kind: Any, value: Any) -> Any:
    """``value`` from TOML as ``kind``; raises ValueError with the problem."""
    kind, optional = _strip_optional(kind)
    if value is None and optional:
        return None
    origin = typing.get_origin(kind)
    if origin is tuple:
        (item, *_) = typing.get_args(kind)
        if isinstance(value, str) and item is str:
            value = [value]
        if not isinstance(value, list):
            raise ValueError(f"must be a list, not {type(value).__name__}")
        if item is str and not all(isinstance(v, str) for v in value):
            raise ValueError("must be a list of strings")
        if typing.get_origin(item) is dict and not all(isinstance(v, dict) for v in value):
            raise ValueError("must be a list of tables")
        return tuple(value)
    if origin is dict or kind is dict:
        if not isinstance(value, dict):
            raise ValueError(f"must be a table, not {type(value).__name__}")
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, not {type(value).__name__}")
        return value
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"must be {_name(kind)}, not {type(value).__name__}")
    return value


def from_env(kind: Any, raw: str) -> Any:
    """An environment variable's text as ``kind`` (lists comma-separated); raises ValueError."""
    kind, _ = _strip_optional(kind)
    if kind is bool:
        if raw.lower() not in _TRUE + _FALSE:
            raise ValueError(f"cannot read {raw!r} as true or false")
        return raw.lower() in _TRUE
    try:
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
    except ValueError:
        raise ValueError(f"cannot read {raw!r} as {_name(kind)}") from None
    if typing.get_origin(kind) is tuple:
        return tuple(item.strip() for item in raw.replace(",", " ").split() if item.strip())
    if typing.get_origin(kind) is dict or kind is dict:
        raise ValueError("tables cannot be set from the environment")
    return raw


def read_table(cls: type[T], table: Any, *, source: str, where: str, problems: Problems,
               env: Mapping[str, str] | None = None, env_prefix: str | None = None,
               skip: tuple[str, ...] = ()) -> T | None:
    """One table as ``cls``; problems are recorded and the field keeps its default. None if unusable."""
    prefix = f"{where}." if where else ""
    if table is None:
        table = {}
    if not isinstance(table, dict):
        problems.add(source, where or "-", "must be a table")
        return None
    kinds = _kinds(cast(Hashable, cls))
    for key in sorted(set(table) - set(kinds) - set(skip)):
        problems.add(source, f"{prefix}{key}", "unknown key")
    values: dict[str, Any] = {}
    for name, kind in kinds.items():
        if name in skip:
            continue
        variable = f"{env_prefix}{name.upper()}" if env_prefix is not None else None
        try:
            if env is not None and variable is not None and variable in env:
                try:
                    values[name] = from_env(kind, env[variable])
                except ValueError as exc:
                    problems.add(f"environment {variable}", f"{prefix}{name}", str(exc))
            elif name in table:
                values[name] = coerce(kind, table[name])
        except ValueError as exc:
            problems.add(source, f"{prefix}{name}", str(exc))
    missing = [f.name for f in dataclasses.fields(cls)  # type: ignore[arg-type]
               if f.init and f.name not in values and f.name not in skip
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    for name in missing:
        problems.add(source, f"{prefix}{name}", "required")
    if missing:
        return None
    return cls(**values)
