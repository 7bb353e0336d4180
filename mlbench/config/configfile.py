"""Reading a config file: the checks on the file, the YAML (safe, no duplicate keys) and its shape.

Owns turning a missing, unreadable, special or oversized file, text that is not UTF-8, a YAML
syntax error, a document that is not a mapping and an alias bomb into one UserError naming the
file (and line), before anything validates the content (mlbench/config/schema.py, pydantic). Imports
the standard library and (on the first parse) yaml only, never pydantic: `mlbench run --config`
with a missing file or a YAML syntax error answers without loading the config's models
(tests/test_cli_fast.py pins it). Must not import any ML framework.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import catalog
from ..errors import UserError

DEFAULT_CONFIG = catalog.configs_dir() / "quick_test.yaml"
MAX_NODES = 100_000  # a config is small; more means alias bombs (`a: &a [..]; b: [*a, *a, ..]`)
MAX_DEPTH = 32


@dataclass(frozen=True)
class ConfigFile:
    """A config file read and parsed: its mapping, the name errors give it, and its path."""
    raw: dict
    where: str
    path: Path


def read(path: str | Path | None) -> ConfigFile:
    """The config file at `path` (None: the embedded default), read and parsed; every problem
    with the file or its YAML is a UserError naming the file."""
    from . import guards
    p = Path(path) if path is not None else DEFAULT_CONFIG
    where = str(path) if path is not None else f"embedded default {DEFAULT_CONFIG.name}"
    if not str(p).strip():
        raise UserError("config path is empty", "--config")
    # a FIFO would block forever, /dev/zero would never end: regular files of sane size only
    guards.regular_file(p, "config file", guards.MAX_CONFIG_BYTES)
    try:
        with open(p, "rb") as fh:
            text = fh.read(guards.MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise UserError(f"cannot read config: {exc.strerror}", str(p)) from None
    if len(text) > guards.MAX_CONFIG_BYTES:
        raise UserError(f"config file is too large (over {guards.MAX_CONFIG_BYTES:,} bytes)",
                        str(p))
    return ConfigFile(parse_yaml(text, where), where, p)


@lru_cache(maxsize=1)
def _loader() -> type:
    """The YAML loader class, defined on first use: yaml (~12 ms) loads only for a file that
    exists."""
    import yaml

    class _Loader(yaml.SafeLoader):
        """SafeLoader (no python/* tags, nothing executes) that also refuses duplicate keys: with
        plain YAML the last `epochs:` silently wins, and the user measures the wrong thing."""

        def construct_mapping(self, node, deep=False):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base`: merged keys may be overridden, as yaml.safe_load does
                key = self.construct_object(key_node, deep=True)
                try:
                    hashable = key in seen or True
                except TypeError:
                    hashable = False
                if hashable and key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})",
                        key_node.start_mark)
                if hashable:
                    seen[key] = key_node.start_mark.line
            return super().construct_mapping(node, deep=deep)

    return _Loader


def parse_yaml(text: bytes, where: str) -> dict:
    import yaml
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError("config is not UTF-8 text (binary file?)", where) from None
    try:
        loader = _loader()(decoded)  # a SafeLoader: no python/* tags, nothing executes
        try:
            raw = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise UserError(f"YAML syntax error: {exc.problem or exc}", f"{where}: {line}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"YAML error: {str(exc).splitlines()[0]}", where) from None
    except RecursionError:
        raise UserError("YAML is too deeply nested or recursive", where) from None
    if raw is None:
        raise UserError("config is empty; expected a mapping with frameworks, models, ...",
                        where)
    if not isinstance(raw, dict):
        kind = {"list": "a list", "int": "a number", "float": "a number", "str": "a string",
                "bool": "a boolean"}.get(type(raw).__name__, type(raw).__name__)
        raise UserError(f"config must be a mapping of keys to values, not {kind}", where)
    _check_shape(raw, where)
    return raw


def _check_shape(raw: Any, where: str) -> None:
    """Refuse recursive aliases, absurd nesting and alias bombs before pydantic walks them
    (a self-referencing list would recurse; a billion laughs would take forever)."""
    count = 0
    stack: list[tuple[Any, str, int, frozenset]] = [(raw, "", 0, frozenset())]
    while stack:
        node, loc, depth, path = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise UserError(f"config is too large (over {MAX_NODES:,} values; YAML aliases "
                            "expanding into each other?)", f"{where}: {loc}" if loc else where)
        if not isinstance(node, (dict, list)):
            continue
        if id(node) in path:
            raise UserError("config is recursive (a YAML alias refers to itself)",
                            f"{where}: {loc}" if loc else where)
        if depth >= MAX_DEPTH:
            raise UserError(f"config is nested deeper than {MAX_DEPTH} levels",
                            f"{where}: {loc}" if loc else where)
        inner = path | {id(node)}
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for k, v in items:
            sub = f"{loc}[{k}]" if isinstance(node, list) else (f"{loc}.{k}" if loc else str(k))
            stack.append((v, sub, depth + 1, inner))
