"""One strict configuration loader for every TOML file of the project.

Precedence is CLI ``--set a.b=v`` > TOML file > dataclass defaults. Merging happens in dict space;
only then are the frozen dataclasses built, so an unknown key anywhere is reported with the list of
valid keys before anything runs (torchtitan ``configurable.py``; Megatron ``__post_init__``).
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

T = TypeVar("T")

__all__ = [
    "apply_overrides",
    "build",
    "load",
    "load_toml",
    "parse_override",
    "to_dict",
    "to_json",
    "to_toml",
]


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, turning a missing file or a syntax error into a one-line ValueError."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config file {str(p)!r} does not exist")
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {str(p)!r} is not valid TOML: {exc}") from None


def _parse_scalar(text: str) -> Any:
    """Parse the value of ``--set key=value`` as a TOML value, falling back to a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into its key path and parsed value.

    Raises:
        ValueError: when the item has no ``=`` or an empty key.
    """
    key, sep, value = item.partition("=")
    if not sep or not key.strip() or any(not k for k in key.strip().split(".")):
        raise ValueError(f"--set {item!r}: expected KEY=VALUE with a dotted key such as parallel.tp=2")
    return key.strip().split("."), _parse_scalar(value.strip())


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Return a deep copy of ``data`` with each ``a.b=v`` override applied (CLI wins)."""
    out = json.loads(json.dumps(data))
    for item in overrides:
        path, value = parse_override(item)
        node = out
        for k in path[:-1]:
            nxt = node.setdefault(k, {})
            if not isinstance(nxt, dict):
                raise ValueError(f"--set {item!r}: {k!r} is a value, not a section")
            node = nxt
        node[path[-1]] = value
    return out


def _type_ok(value: Any, tp: Any) -> tuple[bool, Any]:
    """Check (and lightly coerce: int -> float, list -> tuple) ``value`` against annotation ``tp``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(tp):
            if arm is type(None) and value is None:
                return True, None
            ok, v = _type_ok(value, arm)
            if ok:
                return True, v
        return False, value
    if origin is typing.Literal:
        return value in typing.get_args(tp), value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return False, value
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        items = []
        for v in value:
            ok, cv = _type_ok(v, args[0]) if args else (True, v)
            if not ok:
                return False, value
            items.append(cv)
        return True, tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        return isinstance(value, dict), value
    if tp is float:
        if isinstance(value, bool):
            return False, value
        return isinstance(value, (int, float)), float(value) if isinstance(value, (int, float)) else value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if dataclasses.is_dataclass(tp):
        return isinstance(value, (dict, tp)), value
    if isinstance(tp, type):
        return isinstance(value, tp), value
    return True, value


def _describe(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def build(cls: type[T], data: Mapping[str, Any] | T | None, where: str = "") -> T:
    """Construct dataclass ``cls`` from ``data``, recursively, rejecting unknown keys.

    Args:
        cls: a (frozen, keyword-only) dataclass type.
        data: a mapping from TOML, an instance of ``cls`` (returned as is) or None (defaults).
        where: dotted prefix used in error messages, e.g. ``"parallel"``.

    Raises:
        ValueError: naming the field, the value and what is allowed.
    """
    if isinstance(data, cls):
        return data
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ValueError(f"{where or cls.__name__}: expected a table of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(
            f"{where + '.' if where else ''}{unknown[0]}: unknown key; valid keys are "
            + ", ".join(sorted(fields))
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        tp = hints[name]
        if dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
            kwargs[name] = build(tp, value, key)
            continue
        ok, coerced = _type_ok(value, tp)
        if not ok:
            raise ValueError(f"{key} = {value!r}: expected {_describe(tp)}")
        kwargs[name] = coerced
    missing = [n for n, f in fields.items() if n not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{where + '.' if where else ''}{missing[0]}: required key is missing")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - guarded by the checks above
        raise ValueError(f"{where or cls.__name__}: {exc}") from None


def load(path: str | Path | None, cls: type[T], overrides: Sequence[str] = ()) -> T:
    """Load a TOML file (or nothing), apply ``--set`` overrides and build ``cls`` strictly."""
    data = load_toml(path) if path is not None else {}
    return build(cls, apply_overrides(data, overrides))


def to_dict(obj: Any) -> Any:
    """Turn a (nested) dataclass into plain dicts/lists suitable for JSON or TOML."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _toml_scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_scalar(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_string(str(k))} = {_toml_scalar(x)}" for k, x in v.items()) + "}"
    if v is None:
        raise ValueError("TOML has no null; leave the key out instead")
    return _toml_string(str(v))


def _toml_string(s: str) -> str:
    """A TOML basic string: JSON's escapes, but non-BMP characters as \\UXXXXXXXX (never surrogates)
    and DEL escaped, both of which TOML 1.0 requires (toml.io/en/v1.0.0#string)."""
    if any(0xD800 <= ord(c) <= 0xDFFF for c in s):
        raise ValueError(f"string {s!r}: contains a lone surrogate (undecodable bytes), not valid in TOML")
    out = json.dumps(s).replace("\x7f", "\\u007f")
    return re.sub(r"\\ud[89ab][0-9a-f]{2}\\ud[c-f][0-9a-f]{2}",
                  lambda m: f"\\U{ord(json.loads(chr(34) + m.group(0) + chr(34))):08X}", out)


def to_toml(data: Any) -> str:
    """Serialise a (dataclass or) dict of tables of scalars to TOML; ``tomllib`` reads it back."""
    data = to_dict(data)
    lines = [f"{k} = {_toml_scalar(v)}" for k, v in data.items() if not isinstance(v, dict) and v is not None]
    for name, table in data.items():
        if isinstance(table, dict):
            lines += ["", f"[{name}]"] + [f"{k} = {_toml_scalar(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"


def to_json(obj: Any) -> str:
    """The resolved configuration as canonical JSON (sorted keys), as written next to outputs."""
    return json.dumps(to_dict(obj), sort_keys=True)
