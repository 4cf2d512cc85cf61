"""One strict configuration loader for every TOML file of the project.

Precedence is CLI ``--set a.b=v`` > TOML file > dataclass defaults. Merging happens in dict space;
only then are the frozen dataclasses built, so an unknown key anywhere is reported with the list of
valid keys before anything runs (torchtitan ``configurable.py``; Megatron ``__post_init__``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

T = TypeVar("T")

MAX_DEPTH = 32
"""Deepest nesting of tables and arrays a config may have (every real config has at most 3)."""

__all__ = [
    "apply_overrides",
    "build",
    "load",
    "load_toml",
    "parse_override",
    "to_dict",
    "to_json",
    "to_toml",
    "toml_string",
]


def _depth(value: Any) -> int:
    """Nesting depth of dicts and lists, computed without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend((x, d + 1) for x in v)
        deepest = max(deepest, d)
    return deepest


def _loads(text: str, where: str) -> dict[str, Any]:
    """``tomllib.loads`` with every failure (syntax, nesting too deep) as one line naming ``where``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{where} is not valid TOML: {exc}") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits (sys.get_int_max_str_digits)
        raise ValueError(f"{where} is not valid TOML: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise ValueError(f"{where}: tables or arrays nested too deeply (at most {MAX_DEPTH} levels)") from None
    if _depth(data) > MAX_DEPTH:
        raise ValueError(f"{where}: tables or arrays nested {_depth(data)} levels deep; at most {MAX_DEPTH} allowed")
    return data


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, turning a missing, unreadable, non-UTF-8, invalid or too deeply nested file
    into a one-line ValueError naming it."""
    p = Path(path)
    where = f"config file {str(p)!r}"
    if not p.is_file():
        raise ValueError(f"{where} does not exist")
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ValueError(f"{where} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where} is not UTF-8 text (byte {exc.start}); TOML files are UTF-8") from None
    return _loads(text, where)


def _parse_scalar(text: str) -> Any:
    """Parse the value of ``--set key=value`` as a TOML value, falling back to a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    except ValueError as exc:  # an integer of more than 4,300 digits
        raise ValueError(f"--set value {text[:20]!r}...: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise ValueError(f"--set value {text[:40]!r}...: nested too deeply (at most {MAX_DEPTH} levels)") from None


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
    out = copy.deepcopy(dict(data))  # not a JSON round trip: TOML dates and times are not JSON
    for item in overrides:
        path, value = parse_override(item)
        if len(path) + _depth(value) > MAX_DEPTH:
            raise ValueError(f"--set {item[:60]!r}: nested deeper than {MAX_DEPTH} levels")
        node = out
        for k in path[:-1]:
            nxt = node.setdefault(k, {})
            if not isinstance(nxt, dict):
                raise ValueError(f"--set {item!r}: {k!r} is a value, not a section")
            node = nxt
        node[path[-1]] = value
    return out


def _type_ok(value: Any, tp: Any, where: str = "") -> tuple[bool, Any]:
    """Check (and lightly coerce: int -> float, list -> tuple, table -> dataclass) ``value`` against
    annotation ``tp``; ``where`` prefixes errors raised while building a nested dataclass."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True, value
    if hasattr(tp, "from_config"):  # a value type that parses its own spellings (rampspec.RampSpec)
        return True, tp.from_config(value, where)
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(tp):
            if arm is type(None) and value is None:
                return True, None
            ok, v = _type_ok(value, arm, where)
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
            ok, cv = _type_ok(v, args[0], where) if args else (True, v)
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
        if isinstance(value, Mapping):
            return True, build(tp, value, where)
        return isinstance(value, tp), value
    if isinstance(tp, type):
        return isinstance(value, tp), value
    return True, value


def _describe(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return "a list, each " + (_describe(args[0]) if args else "a value")
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
        big = next((v for v in (value if isinstance(value, (list, tuple)) else [value])
                    if isinstance(v, int) and not isinstance(v, bool) and not -2**63 <= v < 2**63), None)
        if big is not None:
            raise ValueError(f"{key}: an integer of {big.bit_length()} bits, outside TOML's 64-bit integer range")
        if hasattr(tp, "from_config"):  # a value type with its own spellings (ramp.RampSpec)
            kwargs[name] = tp.from_config(value, key)
            continue
        if dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
            kwargs[name] = build(tp, value, key)
            continue
        ok, coerced = _type_ok(value, tp, key)
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
    if hasattr(obj, "to_config") and not isinstance(obj, type):
        return obj.to_config()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_string(s: str, key: str = "value") -> str:
    """``s`` as an ASCII TOML basic string: \\uXXXX inside the BMP, \\UXXXXXXXX outside it (JSON's
    surrogate pairs are not valid TOML), so any Unicode text, emoji included, reads back unchanged.

    Raises:
        ValueError: when ``s`` holds a lone surrogate (not Unicode text; TOML cannot hold it).
    """
    out = []
    for ch in s:
        o = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif 0x20 <= o < 0x7F:
            out.append(ch)
        elif 0xD800 <= o <= 0xDFFF:
            raise ValueError(f"{key} = {s!r}: holds the lone surrogate U+{o:04X} (undecodable bytes, not"
                             " Unicode text); TOML cannot store it")
        else:
            out.append(f"\\u{o:04X}" if o <= 0xFFFF else f"\\U{o:08X}")
    return '"' + "".join(out) + '"'


def _toml_key(k: Any) -> str:
    k = str(k)
    return k if k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k) else toml_string(k, "key")


def toml_value(v: Any, key: str = "value") -> str:
    """One TOML value (scalar, array or inline table) as text; ``key`` names it in errors."""
    if hasattr(v, "item") and hasattr(v, "dtype") and getattr(v, "ndim", 1) == 0:
        v = v.item()  # a numpy scalar (np.float64 reprs as "np.float64(...)", np.int64 is no int)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x, key) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {toml_value(x, f'{key}.{k}')}" for k, x in v.items()) + "}"
    if v is None:
        raise ValueError(f"{key}: TOML has no null; leave the key out instead")
    return toml_string(str(v), key)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename, so that a reader (or a crash)
    never sees a half-written file; creates the parent folder. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def _toml_comment(text: str) -> list[str]:
    """``# `` lines of ``text``, one per ``\\n``; characters a TOML comment cannot hold (controls other than
    tab) and non-ASCII ones are written as ``\\uXXXX``, so any text (a hostile path) keeps the file valid."""
    def safe(ch: str) -> str:
        return ch if ch == "\t" or 0x20 <= ord(ch) < 0x7F else f"\\u{ord(ch):04X}" if ord(ch) <= 0xFFFF \
            else f"\\U{ord(ch):08X}"
    return [("# " + "".join(safe(ch) for ch in line)).rstrip() for line in text.split("\n")] if text else []


def to_toml(data: Any, *, comment: str = "") -> str:
    """Serialise a (dataclass or) dict of tables of scalars to TOML; ``tomllib`` reads it back. The project's
    one TOML writer: run.toml, branch configs and system profiles all go through it.

    Args:
        data: a dataclass or a dict; keys with value None are left out (TOML has no null).
        comment: text written first as ``#`` lines (escaped where TOML would not take it).
    """
    data = to_dict(data)
    lines = _toml_comment(comment) + [f"{_toml_key(k)} = {toml_value(v, str(k))}" for k, v in data.items()
                                      if not isinstance(v, dict) and v is not None]
    for name, table in data.items():
        if isinstance(table, dict):
            lines += ["", f"[{_toml_key(name)}]"] + [f"{_toml_key(k)} = {toml_value(v, f'{name}.{k}')}"
                                                      for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"


def to_json(obj: Any) -> str:
    """The resolved configuration as canonical JSON (sorted keys), as written next to outputs."""
    return json.dumps(to_dict(obj), sort_keys=True)
