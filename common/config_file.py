"""A service's configuration from one TOML file: every key is a field of its config dataclass.

Why one loader for every service: a host runs each service from one command and one file
(``ffs meta serve --config meta.toml``, ``ffs storage serve --config storage.toml``), and the
file's keys must be exactly the names the code and docs/configuration.md use, checked the same
way everywhere. The rules:

- a key is a field name (``heartbeat_timeout_ms = 2000``); a TOML table is a field that is a
  dataclass itself (storage's ``[bulk_limits]``);
- an unknown key is an error naming it; a field without a default must be given;
- types follow the field: int (not bool), float (an int will do), bool, str, path (a string);
  an int field that counts bytes (the word ``bytes`` in its name, rates ``..._per_s`` aside)
  also takes a size string such as ``"64GiB"``; an optional field (``X | None``) takes
  ``false`` for none; a field whose type is in ``parsers`` takes a string that its parser
  reads (storage's ``target_reserve = "5%"``), checked before the table rule;
- ``overrides`` are ``KEY=VALUE`` strings (``--set`` on the command line; dotted keys reach
  tables: ``bulk_limits.idle_s_max=30``): VALUE is read as a TOML value, and as a plain string
  when it is not one, so ``--set listen=0.0.0.0:9000`` needs no quotes. They win over the file.

Environment variables are not read here: with a config file, what a host runs is what its file
(and its command line) says. The dataclass's own checks (``__post_init__``) run last; their
errors come back as ConfigError naming the file.
"""

from __future__ import annotations

import dataclasses
import pathlib
import tomllib
import types
import typing
from typing import Any, Callable, Mapping, Sequence, TypeVar

from .errors import InvalidArgument
from .units import parse_size

C = TypeVar("C")
Parsers = Mapping[type, Callable[[str], Any]]


class ConfigError(InvalidArgument):
    """A configuration file or override the service cannot run with; the message names the key."""


def load_config(cls: type[C], path: str | pathlib.Path, overrides: Sequence[str] = (),
                parsers: Parsers | None = None) -> C:
    """cls built from the TOML file at path, then the KEY=VALUE overrides."""
    path = pathlib.Path(path)
    try:
        with open(path, "rb") as handle:
            table = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    for override in overrides:
        _apply_override(table, override)
    return config_from_table(cls, table, str(path), parsers or {})


def config_from_table(cls: type[C], table: Mapping[str, Any], source: str, parsers: Parsers,
                      prefix: str = "") -> C:
    """cls from a parsed TOML table; source (a file name) and prefix (a table's dotted name) go into errors."""
    fields = {field.name: field for field in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown key {prefix + unknown[0]!r}"
                          f"{' (and ' + str(len(unknown) - 1) + ' more)' if len(unknown) > 1 else ''}; "
                          f"known keys{' of [' + prefix.rstrip('.') + ']' if prefix else ''}: "
                          f"{', '.join(sorted(fields))}")
    values = {}
    for name, field in fields.items():
        if name in table:
            values[name] = _convert(table[name], hints[name], f"{prefix}{name}", source, parsers)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: missing key {prefix + name!r} (it has no default)")
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def _apply_override(table: dict[str, Any], override: str) -> None:
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {override!r} is not KEY=VALUE")
    try:
        value = tomllib.loads(f"value = {text.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = text.strip()                 # a bare string: --set listen=0.0.0.0:9000
    *tables, name = key.split(".")
    for part in tables:
        inner = table.setdefault(part, {})
        if not isinstance(inner, dict):
            raise ConfigError(f"override {override!r}: {part!r} is not a table")
        table = inner
    table[name] = value


def _is_byte_count(name: str) -> bool:
    words = name.rsplit(".", 1)[-1].split("_")
    return "bytes" in words and not name.endswith("_per_s")


def _convert(value: Any, kind: Any, name: str, source: str, parsers: Parsers) -> Any:
    where = f"{source}: key {name!r}"
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if len(options) != 1:
            raise TypeError(f"{name}: no TOML form for {kind}")
        if value is False:
            return None
        kind = options[0]
    if kind in parsers:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, not {value!r}")
        try:
            return parsers[kind](value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table ([{name}]), not {value!r}")
        return config_from_table(kind, value, source, parsers, prefix=f"{name}.")
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, not {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _is_byte_count(name):
            try:
                return parse_size(value)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from exc
        wanted = "an integer or a size such as \"64GiB\"" if _is_byte_count(name) else "an integer"
        raise ConfigError(f"{where} must be {wanted}, not {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where} must be a number, not {value!r}")
    if kind in (str, pathlib.Path):
        if isinstance(value, str):
            return kind(value)
        raise ConfigError(f"{where} must be a string, not {value!r}")
    raise TypeError(f"{name}: no TOML form for {kind}; pass a parser for it")
