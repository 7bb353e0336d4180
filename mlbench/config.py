"""The benchmark configuration: YAML in, a validated, frozen pydantic model out.

Owns the config schema, the embedded default (configs/quick_test.yaml), command-line overrides,
and turning every problem into one UserError line naming the file and the key path.
Must not import any ML framework.
"""
from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from . import catalog
from .errors import UserError

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "quick_test.yaml"
DEVICE_RE = re.compile(r"cpu|cuda:\d{1,2}")  # always fullmatch: `$` would let "cpu\n" in
SAFE_LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_NODES = 100_000  # a config is small; more means alias bombs (`a: &a [..]; b: [*a, *a, ..]`)
MAX_DEPTH = 32
MAX_MEMORY_MB = 16 * 1024 * 1024  # 16 TiB: beyond any machine; larger is a typo

PosInt = Annotated[int, Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ModelEntry(_Strict):
    """One model of the sweep: a name, a preset, size overrides, optionally the user's data."""
    name: str
    preset: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    data: str | None = Field(None, description="path to an .npz with x_train, y_train, x_eval, "
                                               "y_eval")
    label: str | None = None
    train_samples: int | None = Field(None, gt=0, le=100_000_000)
    eval_samples: int | None = Field(None, gt=0, le=100_000_000)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        return _check_choice(v, catalog.models(), "model")

    @field_validator("label")
    @classmethod
    def _safe_label(cls, v: str | None) -> str | None:
        if v is not None and not SAFE_LABEL_RE.fullmatch(v):
            raise ValueError("label may use letters, digits, '.', '_' and '-' only "
                             "(it becomes part of a directory name)")
        return v

    @model_validator(mode="after")
    def _spec_valid(self) -> "ModelEntry":
        s = catalog.specs()
        opts = dict(self.options)
        if self.preset is not None:
            opts["preset"] = self.preset
        try:
            s.model_spec(self.name, opts)
        except s.SpecError as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def model_options(self) -> dict:
        opts = dict(self.options)
        opts["preset"] = self.preset or catalog.specs().DEFAULT_PRESET[self.name]
        return opts

    @property
    def id_label(self) -> str:
        if self.label:
            return self.label
        default = catalog.specs().DEFAULT_PRESET[self.name]
        label = self.name if (self.preset in (None, default)) else f"{self.name}.{self.preset}"
        if self.options:
            import hashlib
            import json
            digest = hashlib.sha1(json.dumps(self.options, sort_keys=True).encode()).hexdigest()
            label += f".{digest[:6]}"
        return label


class FrameworkSettings(_Strict):
    python: str | None = Field(None, description="interpreter to run this framework's worker")
    options: dict[str, bool | int | float | str | list[int | float | str]] = Field(
        default_factory=dict)

    @field_validator("python")
    @classmethod
    def _interpreter(cls, v: str | None) -> str | None:
        # Checked here (not only before the run) so the error names the config file.
        if v is not None and not (os.path.isfile(v) and os.access(v, os.X_OK)):
            raise ValueError(f"interpreter {v!r} does not exist or is not executable")
        return v


class Exclude(_Strict):
    """Cells matching every given field are left out of the sweep."""
    framework: str | None = None
    model: str | None = None
    device: str | None = None
    batch_size: int | None = Field(None, gt=0, le=1_000_000)
    precision: str | None = None

    # A misspelt rule would silently exclude nothing: check the values like the lists'.
    @field_validator("framework")
    @classmethod
    def _fw(cls, v: str | None) -> str | None:
        allowed = catalog.FRAMEWORKS + catalog.TEST_FRAMEWORKS
        return None if v is None else _check_choice(catalog.canonical_framework(v), allowed,
                                                    "framework", shown=catalog.FRAMEWORKS)

    @field_validator("model")
    @classmethod
    def _model(cls, v: str | None) -> str | None:
        return None if v is None else _check_choice(v, catalog.models(), "model")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str | None) -> str | None:
        return None if v is None else _check_device(v)

    @field_validator("precision")
    @classmethod
    def _precision(cls, v: str | None) -> str | None:
        return None if v is None else _check_choice(v.lower(), catalog.PRECISIONS, "precision")


class CellsPerNode(_Strict):
    """How many cells may run at once on one node (Ray executor). cpu: 1 means a CPU cell holds
    its node alone; gpu: 0 means one per GPU of the node."""
    cpu: int = Field(1, gt=0, le=64)
    gpu: int = Field(0, ge=0, le=64)


class ExecutorSettings(_Strict):
    """Where cells run: `local` (one at a time on this machine) or `ray` (a Ray cluster: no
    address starts one on this machine, `auto` joins the running one, or host:port / ray://)."""
    kind: Literal["local", "ray"] = "local"
    address: str | None = Field(None, min_length=1, max_length=1000)
    cells_per_node: CellsPerNode = Field(default_factory=CellsPerNode)


class Config(_Strict):
    frameworks: list[str] = Field(min_length=1)
    models: list[ModelEntry] = Field(min_length=1)
    devices: list[str] = Field(default_factory=lambda: ["cpu"], min_length=1)
    batch_sizes: list[Annotated[int, Field(gt=0, le=1_000_000)]] = Field(min_length=1)
    precisions: list[str] = Field(default_factory=lambda: ["fp32"], min_length=1)
    epochs: int = Field(1, gt=0, le=10_000)
    seed: int = Field(0, ge=0, lt=2**32)
    train_samples: int = Field(2048, gt=0, le=100_000_000)
    eval_samples: int = Field(512, gt=0, le=100_000_000)
    warmup_iterations: int = Field(5, ge=0, le=100_000)
    timed_iterations: int = Field(30, gt=0, le=1_000_000)
    repeats: int = Field(1, gt=0, le=1000)
    threads: int = Field(0, ge=0, le=4096, description="0: one per physical core")
    timeout_s: float = Field(900, gt=0, le=7 * 24 * 3600, allow_inf_nan=False)
    memory_limit_mb: int | None = Field(None, gt=0, le=MAX_MEMORY_MB)
    tf32: bool = False
    init: Literal["canonical", "framework"] = Field(
        "canonical", description="canonical: every framework starts from the same weights")
    verify: bool = Field(True, description="run the equivalence gate before the cells")
    ceiling: bool = Field(True, description="measure each device's matmul ceiling (for MFU)")
    output_dir: str = "results"
    exclude: list[Exclude] = Field(default_factory=list)
    framework_settings: dict[str, FrameworkSettings] = Field(default_factory=dict)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)

    @field_validator("models", mode="before")
    @classmethod
    def _models_from_names(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"name": m} if isinstance(m, str) else m for m in v]
        return v

    @field_validator("frameworks")
    @classmethod
    def _frameworks(cls, v: list[str]) -> list[str]:
        allowed = catalog.FRAMEWORKS + catalog.TEST_FRAMEWORKS
        return _unique([_check_choice(catalog.canonical_framework(f), allowed, "framework",
                                      shown=catalog.FRAMEWORKS) for f in v], "framework")

    @field_validator("devices")
    @classmethod
    def _devices(cls, v: list[str]) -> list[str]:
        return _unique([_check_device(d) for d in v], "device")

    @field_validator("precisions")
    @classmethod
    def _precisions(cls, v: list[str]) -> list[str]:
        return _unique([_check_choice(p.lower(), catalog.PRECISIONS, "precision") for p in v],
                       "precision")

    @field_validator("batch_sizes")
    @classmethod
    def _batches(cls, v: list[int]) -> list[int]:
        return _unique(v, "batch size")

    @field_validator("framework_settings")
    @classmethod
    def _settings_keys(cls, v: dict) -> dict:
        allowed = catalog.FRAMEWORKS + catalog.TEST_FRAMEWORKS
        out = {}
        for k, s in v.items():
            out[_check_choice(catalog.canonical_framework(k), allowed, "framework")] = s
        return out

    @field_validator("models", mode="after")
    @classmethod
    def _labels_unique(cls, v: list[ModelEntry]) -> list[ModelEntry]:
        labels = [m.id_label for m in v]
        dup = {x for x in labels if labels.count(x) > 1}
        if dup:
            raise ValueError(f"models listed twice: {', '.join(sorted(dup))} "
                             "(give one of them another preset, options or a label)")
        return v


def _check_device(d: str) -> str:
    if not DEVICE_RE.fullmatch(d):
        raise ValueError(f"malformed device {d!r}; use 'cpu' or 'cuda:N' (e.g. cuda:0)")
    return d


def _unique(values: list, what: str) -> list:
    seen = []
    for x in values:
        if x in seen:
            raise ValueError(f"duplicate {what} {x!r}")
        seen.append(x)
    return values


def _check_choice(value: str, allowed: tuple[str, ...], what: str,
                  shown: tuple[str, ...] | None = None) -> str:
    if value in allowed:
        return value
    close = difflib.get_close_matches(str(value), allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown {what} {value!r}{hint}; allowed: {', '.join(shown or allowed)}")


# ---------------------------------------------------------------------------------------------

def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> Config:
    """Load, override and validate. Every problem becomes a UserError naming file and key."""
    p = Path(path) if path is not None else DEFAULT_CONFIG
    where = str(path) if path is not None else f"embedded default {DEFAULT_CONFIG.name}"
    try:
        text = p.read_bytes()
    except FileNotFoundError:
        raise UserError("config file not found", str(p)) from None
    except IsADirectoryError:
        raise UserError("config path is a directory, not a YAML file", str(p)) from None
    except OSError as exc:
        raise UserError(f"cannot read config: {exc.strerror}", str(p)) from None
    raw = parse_yaml(text, where)
    return validate(_absolute_data_paths(raw, p.resolve().parent), where, overrides)


def _absolute_data_paths(raw: dict, base: Path) -> dict:
    """A model's `data:` is relative to its config file; stored absolute, so a resumed run (from
    the snapshot in run.json, in any working directory) reads the same file."""
    models = raw.get("models")
    if not isinstance(models, list):
        return raw
    fixed = []
    for m in models:
        if isinstance(m, dict) and isinstance(m.get("data"), str) and m["data"] \
                and not Path(m["data"]).is_absolute():
            m = {**m, "data": str(base / m["data"])}
        fixed.append(m)
    return {**raw, "models": fixed}


class _Loader(yaml.SafeLoader):
    """SafeLoader (no python/* tags, nothing executes) that also refuses duplicate keys: with
    plain YAML the last `epochs:` silently wins, and the user measures the wrong thing."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
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


def parse_yaml(text: bytes, where: str) -> dict:
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError("config is not UTF-8 text (binary file?)", where) from None
    try:
        loader = _Loader(decoded)  # a SafeLoader: no python/* tags, nothing executes
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


def validate(raw: dict, where: str, overrides: dict[str, Any] | None = None) -> Config:
    _check_shape(raw, where)
    data = dict(raw)
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        # A typo shows up twice (an unknown key and a missing one): name the typo first.
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        err = errors[0]
        loc = _loc(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "missing required key"
        elif err["type"] == "too_short":
            msg = "empty list; give at least one value"
        elif err["type"] == "extra_forbidden":
            key = err["loc"][-1]
            parent = _fields_at(err["loc"][:-1])
            close = difflib.get_close_matches(str(key), parent, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            msg = f"unknown key {key!r}{hint}"
        elif err["type"] in ("int_parsing", "int_type", "float_parsing", "string_type",
                             "list_type", "bool_parsing", "dict_type", "model_type",
                             "int_from_float", "bool_type", "float_type"):
            msg = f"{msg}, got {_short(err.get('input'))}"
        origin = "command line" if loc.split(".")[0].split("[")[0] in (overrides or {}) and \
            (overrides or {}).get(loc.split(".")[0].split("[")[0]) is not None else where
        raise UserError(msg, f"{origin}: {loc}" if loc else origin) from None
    except RecursionError:
        raise UserError("config is recursive (a YAML alias refers to itself)", where) from None


_UNION_TAGS = ("bool", "int", "float", "str")


def _loc(parts: tuple) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif str(p).startswith(("function-", "list[", "dict[")) or p in _UNION_TAGS:
            continue  # pydantic's tags for a union member, not the user's keys
        else:
            out += ("." if out else "") + str(p)
    return out


def _fields_at(loc: tuple) -> list[str]:
    model: Any = Config
    for p in loc:
        if isinstance(p, int) or model is None:
            continue
        field = getattr(model, "model_fields", {}).get(p)
        if field is None:
            return list(FrameworkSettings.model_fields) if p in catalog.FRAMEWORKS else []
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        model = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)),
                     None)
        if model is None and args:
            model = next((a for a in getattr(args[-1], "__args__", ()) if isinstance(a, type)
                          and issubclass(a, BaseModel)), FrameworkSettings
                         if p == "framework_settings" else None)
    return list(getattr(model, "model_fields", {})) if model else []


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def dump(config: Config) -> dict:
    return config.model_dump(mode="json")
