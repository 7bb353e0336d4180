"""The benchmark configuration: YAML in, a validated, frozen pydantic model out.

Owns the config schema, the embedded default (configs/quick_test.yaml), command-line overrides,
and turning every problem into one UserError line naming the file and the key path. Reading the
file and its YAML is mlbench/config/configfile.py's (no pydantic there: those errors answer fast).
Must not import any ML framework.
"""
from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError,
                      ValidationInfo, field_validator, model_validator)

from . import catalog, fwoptions
from ..run import executor_table, selection
from .configfile import (
    DEFAULT_CONFIG, MAX_DEPTH, MAX_NODES, ConfigFile, _check_shape, parse_yaml, read)
from ..analysis.decision import DEFAULT_MARGIN, DEFAULT_MIN_PROCESSES
from ..errors import UserError

DEVICE_RE = re.compile(r"cpu|cuda:\d{1,2}")  # always fullmatch: `$` would let "cpu\n" in
SAFE_LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_MEMORY_MB = 16 * 1024 * 1024  # 16 TiB: beyond any machine; larger is a typo
# Below this no CPU worker can even import numpy and start under the address-space cap (floor
# measured by `python benchmarks/memory_floor.py`: 131 MB with one thread, 171 MB with two;
# OpenBLAS reserves ~40 MB per thread, so a many-core cell needs more: what falls between this
# and its own floor is recorded `oom` by the worker and the launcher).
MIN_MEMORY_MB = 160
MAX_ECHO = 80  # a value echoed in an error is cut to this many characters

PosInt = Annotated[int, Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ModelEntry(_Strict):
    """One model of the sweep: a name, a preset, size overrides, optionally the user's data;
    or the user's own model file (`source`, see mlbench/config/usermodel.py), its options passed to
    the file's builder functions as keyword arguments."""
    source: str | None = Field(None, description="the user's model file (.py, relative to the "
                                                 "config) or an importable module name")
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
    def _known(cls, v: str, info: ValidationInfo) -> str:
        if info.data.get("source") is not None:  # the user's own model: a name of their own
            if v in catalog.models() or not SAFE_LABEL_RE.fullmatch(v):
                raise ValueError(f"name {_short(v)} of a model with a source must be 1 to 64 "
                                 "letters, digits, '.', '_' or '-', and not a built-in model's")
            return v
        return _check_choice(v, catalog.models(), "model")

    @field_validator("source")
    @classmethod
    def _source(cls, v: str | None) -> str | None:
        if v is not None:
            from . import usermodel
            usermodel.inspect(usermodel.resolve(v, Path.cwd()))  # ValueError: one sentence
        return v

    @field_validator("label")
    @classmethod
    def _safe_label(cls, v: str | None) -> str | None:
        if v is not None and not SAFE_LABEL_RE.fullmatch(v):
            raise ValueError(f"label {_short(v)} is not allowed: 1 to 64 characters, letters, "
                             "digits, '.', '_' and '-', starting with a letter or digit (it "
                             "becomes part of a directory name)")
        return v

    @field_validator("data")
    @classmethod
    def _data_path(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("data is empty; give the path of an .npz file or leave it out")
        return v

    @model_validator(mode="after")
    def _spec_valid(self) -> "ModelEntry":
        s = catalog.specs()
        if self.source is not None:
            if self.preset is not None:
                raise _KeyError("a model with a source has no presets (pass sizes in options)",
                                ("preset",))
            if self.data is not None:
                from . import userdata
                try:
                    userdata.check(self.data, self.spec)
                except ValueError as exc:
                    raise _KeyError(str(exc), ("data",)) from None
            return self
        opts = dict(self.options)
        if self.preset is not None:
            opts["preset"] = self.preset
        base = s.PRESETS.get(self.name, {}).get(self.preset or s.DEFAULT_PRESET[self.name], {})
        for key, value in self.options.items():
            if isinstance(base.get(key), (int, list)) and not isinstance(base.get(key), bool):
                try:
                    _check_size_option(self.name, key, value)
                except ValueError as exc:
                    raise _KeyError(str(exc), ("options", key)) from None
        try:
            spec = s.model_spec(self.name, opts)
        except s.SpecError as exc:
            raise ValueError(str(exc)) from None
        if self.data is not None:
            from . import userdata
            try:
                userdata.check(self.data, spec)
            except ValueError as exc:
                raise _KeyError(str(exc), ("data",)) from None
        return self

    @property
    def user_model(self) -> dict | None:
        """What a worker needs to build the user's model (None for a built-in one); its sha256
        is in every cell's fingerprint, so an edited file is re-run by --resume."""
        if self.source is None:
            return None
        from . import usermodel
        info = usermodel.inspect(usermodel.resolve(self.source, Path.cwd()))
        return {"name": self.name, "path": info.path, "sha256": info.sha256,
                "input": info.input, "options": dict(self.options),
                "flops_per_sample": info.flops_per_sample}

    @property
    def spec(self) -> dict:
        """The worker-side spec of this model (workers/specs.py), for checks in the parent."""
        s = catalog.specs()
        if self.source is not None:
            return s.user_spec(self.user_model)
        return s.model_spec(self.name, self.model_options)

    @property
    def data_info(self):
        """Rows and dtype note of the user's data (None without data); cached per file."""
        if self.data is None:
            return None
        from . import userdata
        if self.source is not None:
            return userdata.check(self.data, self.spec)
        opts = {**self.options, "preset": self.preset or catalog.specs().DEFAULT_PRESET[self.name]}
        return userdata.check(self.data, catalog.specs().model_spec(self.name, opts))

    @property
    def model_options(self) -> dict:
        if self.source is not None:
            return dict(self.options)
        opts = dict(self.options)
        opts["preset"] = self.preset or catalog.specs().DEFAULT_PRESET[self.name]
        return opts

    @property
    def id_label(self) -> str:
        if self.label:
            return self.label
        default = None if self.source else catalog.specs().DEFAULT_PRESET[self.name]
        label = self.name if (self.preset in (None, default)) else f"{self.name}.{self.preset}"
        if self.options:
            import hashlib
            import json
            digest = hashlib.sha1(json.dumps(self.options, sort_keys=True).encode()).hexdigest()
            label += f".{digest[:6]}"
        return label


OptionValue = bool | int | float | str | list[int | float | str]


class FrameworkSettings(_Strict):
    python: str | None = Field(None, description="interpreter to run this framework's worker")
    options: dict[str, OptionValue] = Field(default_factory=dict)

    @field_validator("options", mode="after")
    @classmethod
    def _finite(cls, v: dict) -> dict:
        return _finite_options(v)

    @field_validator("python")
    @classmethod
    def _interpreter(cls, v: str | None) -> str | None:
        # Checked here (not only before the run) so the error names the config file.
        if v is not None and not (os.path.isfile(v) and os.access(v, os.X_OK)):
            raise ValueError(f"interpreter {v!r} does not exist or is not executable")
        return v


class FrameworkVariant(_Strict):
    """A `frameworks:` entry that is a variant of a framework: its own label (cell ids, the
    report) and options merged over framework_settings' (e.g. torch.compile, TF's XLA)."""
    framework: str
    label: str | None = None
    options: dict[str, OptionValue] = Field(default_factory=dict)

    @field_validator("framework")
    @classmethod
    def _fw(cls, v: str) -> str:
        return _check_choice(catalog.canonical_framework(v), catalog.FRAMEWORKS +
                             catalog.TEST_FRAMEWORKS, "framework", shown=catalog.FRAMEWORKS)

    @field_validator("label")
    @classmethod
    def _safe_label(cls, v: str | None) -> str | None:
        if v is not None and not SAFE_LABEL_RE.fullmatch(v):
            raise ValueError(f"label {v!r} may use letters, digits, '.', '_' and '-' only "
                             "(it becomes part of cell ids and directory names)")
        return v

    @field_validator("options", mode="after")
    @classmethod
    def _finite(cls, v: dict) -> dict:
        return _finite_options(v)  # as under framework_settings

    @model_validator(mode="after")
    def _options_known(self) -> "FrameworkVariant":
        """A variant's options are checked like framework_settings' (a typo such as `compiel`
        is a config error, not a failed cell)."""
        for key, problem in fwoptions.problems(self.framework, dict(self.options)):
            raise _KeyError(problem, ("options", key))
        return self


def _finite_options(v: dict) -> dict:
    """NaN or infinity in an option (`sleep_s: .nan`) would make the stored request not JSON."""
    for key, value in v.items():
        if isinstance(value, float) and value != value or value in (float("inf"),
                                                                    float("-inf")):
            raise ValueError(f"option {key!r} must be finite, got {value!r}")
    return v


def _entry_kind(v: Any) -> str:
    return "framework variant" if isinstance(v, (dict, FrameworkVariant)) else "framework name"


class _AtKey(ValueError):
    """A ValueError from a whole-config check that knows the key path it is about."""

    def __init__(self, msg: str, loc: str):
        super().__init__(msg)
        self.loc = loc


# A name (`pytorch`, aliases allowed) or a variant mapping; the tags never reach error messages.
FrameworkEntry = Annotated[Union[Annotated[str, Tag("framework name")],
                                 Annotated[FrameworkVariant, Tag("framework variant")]],
                           Discriminator(_entry_kind)]


class Exclude(_Strict):
    """Cells matching every given field are left out of the sweep."""
    framework: str | None = None
    model: str | None = None
    # the model's label (e.g. cnn.resnet18, or a user's label): excludes one preset of a model
    label: str | None = None
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
        if v is None or (isinstance(v, str) and SAFE_LABEL_RE.fullmatch(v)
                         and v not in catalog.models()):
            return v  # perhaps a user's model name: Config._cross_checks knows the models
        return _check_choice(v, catalog.models(), "model")

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
    """Where cells run: a name of mlbench.run.executor_table (`local`: one at a time on this
    machine; `ray`: a Ray cluster: no address starts one on this machine, `auto` joins the
    running one, or host:port / ray://), and the settings of the executors that read them."""
    kind: str = executor_table.DEFAULT
    address: str | None = Field(None, min_length=1, max_length=1000)
    cells_per_node: CellsPerNode = Field(default_factory=CellsPerNode)

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        return _check_choice(v, executor_table.names(), "executor")

    @model_validator(mode="after")
    def _address_needs_its_executor(self) -> "ExecutorSettings":
        takers = executor_table.takes("address")
        if self.address is not None and self.kind not in takers:  # as --ray-address is refused
            raise _KeyError(f"an address is for kind: {' or '.join(takers)} (the {self.kind} "
                            "executor joins no cluster)", ("address",))
        return self


class DecisionSettings(_Strict):
    """When a difference names a winner or a regression (mlbench.analysis.decision: the one
    rule)."""
    margin: float = Field(DEFAULT_MARGIN, ge=0, lt=10, allow_inf_nan=False,
                          description="practical-equivalence margin: the 95% interval of the "
                                      "ratio must lie beyond 1 + margin")
    min_processes: int = Field(DEFAULT_MIN_PROCESSES, ge=2, le=1000,
                               description="fewest processes per side for a winner")


class Measurement(_Strict):
    """How much evidence a cell gathers, and what a contended cell does (README: "How a cell is
    measured"). The minimums travel to the worker in the request (fingerprinted: they change
    what is measured); on_contention and quiet_wait_s are the parent's."""
    min_time_s: float = Field(1.0, ge=0, le=3600, allow_inf_nan=False,
                              description="steady-state training, and the timed inference "
                                          "samples, last at least this long")
    min_blocks: int = Field(10, ge=1, le=100_000,
                            description="at least this many steady-state training blocks")
    max_extra_s: float = Field(30.0, gt=0, le=24 * 3600, allow_inf_nan=False,
                               description="at most this long measuring beyond the configured "
                                           "epochs and timed_iterations")
    on_contention: Literal["warn", "retry"] = Field(
        "warn", description="warn: mark a contended cell; retry: also wait for a quiet "
                            "machine (at most quiet_wait_s) and run it once more")
    quiet_wait_s: float = Field(30.0, ge=0, le=3600, allow_inf_nan=False)

    def wire(self) -> dict:
        """The worker's part (the request's `measurement`)."""
        return {"min_time_s": self.min_time_s, "min_blocks": self.min_blocks,
                "max_extra_s": self.max_extra_s}


class ServingSettings(_Strict):
    """The serving scenarios' settings (workers/loadgen.py; README "Serving")."""
    latency_bound_ms: float = Field(10.0, gt=0, le=3_600_000, allow_inf_nan=False,
                                    description="server: the p99 latency bound")
    single_stream_queries: int = Field(200, gt=0, le=1_000_000,
                                       description="single_stream: timed queries per process")
    trial_s: float = Field(1.0, gt=0, le=3600, allow_inf_nan=False,
                           description="server: a trial offers rate x trial_s queries ...")
    min_queries: int = Field(300, ge=100, le=10_000_000,
                             description="... and at least this many (a stable p99)")
    max_trials: int = Field(6, gt=0, le=100, description="server: rates tried at most")
    budget_s: float = Field(30.0, gt=0, le=24 * 3600, allow_inf_nan=False,
                            description="server: no trial starts after this long")

    def request(self, scenarios: list[str]) -> dict | None:
        """The request's `serving` block; None for offline only (fingerprints unchanged)."""
        if set(scenarios) <= {"offline"}:
            return None
        server = self.model_dump(exclude={"single_stream_queries"})
        return {"scenarios": list(scenarios), "server": server,
                "single_stream": {"queries": self.single_stream_queries}}


class Config(_Strict):
    frameworks: list[FrameworkEntry] = Field(min_length=1)
    modes: list[Literal["default", "best"]] = Field(
        default_factory=lambda: ["default"], min_length=1,
        description="default: each framework out of the box; best: also at its best "
                    "(catalog.MODES)")
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
    memory_limit_mb: int | None = Field(None, ge=MIN_MEMORY_MB, le=MAX_MEMORY_MB)
    tf32: bool = False
    init: Literal["canonical", "framework"] = Field(
        "canonical", description="canonical: every framework starts from the same weights")
    verify: bool = Field(True, description="run the equivalence gate before the cells")
    ceiling: bool = Field(True, description="measure each device's matmul ceiling (for MFU)")
    output_dir: str = Field("results", min_length=1)
    exclude: list[Exclude] = Field(default_factory=list)
    framework_settings: dict[str, FrameworkSettings] = Field(default_factory=dict)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    decision: DecisionSettings = Field(default_factory=DecisionSettings)
    measurement: Measurement = Field(default_factory=Measurement)
    scenarios: list[Literal["offline", "single_stream", "server"]] = Field(
        default_factory=lambda: ["offline"], min_length=1,
        description="offline: inference at the batch sizes (always measured); single_stream: "
                    "batch-1 latency (cells of batch size 1); server: Poisson queries, QPS "
                    "within serving.latency_bound_ms (README: Serving)")
    serving: ServingSettings = Field(default_factory=ServingSettings)

    @field_validator("models", mode="before")
    @classmethod
    def _models_from_names(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"name": m} if isinstance(m, str) else m for m in v]
        return v

    @field_validator("frameworks")
    @classmethod
    def _frameworks(cls, v: list) -> list:
        allowed = catalog.FRAMEWORKS + catalog.TEST_FRAMEWORKS
        names = _unique([_check_choice(catalog.canonical_framework(f), allowed, "framework",
                                       shown=catalog.FRAMEWORKS) if isinstance(f, str) else f
                         for f in v], "framework")
        for i, f in enumerate(names):
            if isinstance(f, FrameworkVariant) and f.label is not None:
                other = catalog.canonical_framework(f.label)
                if other in allowed and other != f.framework:
                    raise _AtKey(f"variant label {f.label!r} is the name of another "
                                 "framework; choose a label that says what it is",
                                 f"frameworks[{i}].label")
        return names

    @field_validator("modes")
    @classmethod
    def _modes(cls, v: list[str]) -> list[str]:
        return _unique(v, "mode")

    @model_validator(mode="after")
    def _variants_unique(self) -> "Config":
        seen: dict[str, str] = {}
        for i, entry in enumerate(self.frameworks):
            for var in self._entry_variants(entry, f"frameworks[{i}]"):
                if var.label in seen:
                    raise _AtKey(f"duplicate framework label {var.label!r} (also "
                                 f"{seen[var.label]}); give one of them another label",
                                 f"frameworks[{i}]")
                seen[var.label] = f"frameworks[{i}]"
        return self

    def _entry_variants(self, entry: "str | FrameworkVariant",
                        where: str = "frameworks") -> list[catalog.Variant]:
        if isinstance(entry, str):
            s = self.framework_settings.get(entry)
            return catalog.mode_variants(entry, self.modes, dict(s.options) if s else {})
        s = self.framework_settings.get(entry.framework)
        opts = {**(s.options if s else {}), **entry.options}
        mode = catalog.classify_mode(entry.framework, opts)
        label = entry.label
        if label is None:
            m = catalog.MODES.get(entry.framework)
            if mode == "default" and not entry.options:
                label = entry.framework
            elif mode == "best" and m is not None and m.best_label \
                    and entry.options == m.best:
                label = m.best_label
            else:
                raise _AtKey(f"a variant of {entry.framework} with options {entry.options} "
                             "needs a label (e.g. label: "
                             f"{entry.framework}-{next(iter(entry.options), 'custom')})",
                             f"{where}.label")
        return [catalog.Variant(label, entry.framework, opts, mode)]

    @property
    def variants(self) -> list[catalog.Variant]:
        """Every competitor of the sweep, in config order: plain entries expanded by `modes`,
        variant entries as given."""
        return [v for e in self.frameworks for v in self._entry_variants(e)]

    @property
    def base_frameworks(self) -> list[str]:
        """The real frameworks of the sweep (worker scripts), each once, in config order."""
        return list(dict.fromkeys(v.framework for v in self.variants))

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

    @field_validator("output_dir")
    @classmethod
    def _output_dir(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("output_dir is blank; name a directory (default: results)")
        if "\x00" in v:
            raise ValueError("output_dir contains a NUL character")
        bad = next((c for c in v if ord(c) < 32 or ord(c) == 127), None)
        if bad is not None:  # "results\n" would make a name ending in a newline
            raise ValueError(f"output_dir contains a control character ({bad!r})")
        v = os.path.expanduser(v)  # `~/x` is the home folder's x, as a model's source: is
        from .guards import NAME_MAX, PATH_MAX
        if any(len(part) > NAME_MAX for part in os.fsencode(v).split(b"/")) \
                or len(os.fsencode(os.path.abspath(v))) > PATH_MAX:
            raise ValueError(f"output_dir is too long (a name over {NAME_MAX} bytes or a path "
                             f"over {PATH_MAX})")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> "Config":
        """What no single key can check: options of frameworks, enough samples per batch."""
        for fw, settings in self.framework_settings.items():
            for key, problem in fwoptions.problems(fw, dict(settings.options)):
                raise _KeyError(problem, ("framework_settings", fw, "options", key))
        from . import usermodel
        for i, m in enumerate(self.models):
            if m.source is not None:
                info = usermodel.inspect(usermodel.resolve(m.source, Path.cwd()))
                why = usermodel.check_frameworks(info, self.base_frameworks)
                if why:
                    raise _KeyError(why, ("models", i, "source"))
                why = usermodel.check_options(info, m.options, self.base_frameworks)
                if why:
                    raise _KeyError(why, ("models", i, "options"))
                why = usermodel.check_weights(info)
                if why:
                    raise _KeyError(why, ("models", i, "source"))
        if "single_stream" in self.scenarios and 1 not in self.batch_sizes:
            raise _KeyError("scenario single_stream is measured in the cells of batch size 1; "
                            "add 1 to batch_sizes", ("scenarios",))
        own = tuple(m.name for m in self.models if m.source is not None)
        for i, rule in enumerate(self.exclude):
            if rule.model is not None and rule.model not in catalog.models():
                try:
                    _check_choice(rule.model, catalog.models() + own, "model")
                except ValueError as exc:
                    raise _KeyError(str(exc), ("exclude", i, "model")) from None
        for i, m in enumerate(self.models):
            info = m.data_info
            rows = info.train_rows if info else (m.train_samples or self.train_samples)
            big = max(self.batch_sizes)
            if rows < 2 * big:
                loc = (("models", i, "data") if info else ("models", i, "train_samples")
                       if m.train_samples else ("train_samples",))
                raise _KeyError(f"{rows} training samples make fewer than two batches of "
                                f"{big} (the first step is timed apart from the steady state); "
                                f"give at least {2 * big} samples or smaller batch_sizes", loc)
        return self

    @field_validator("models", mode="after")
    @classmethod
    def _labels_unique(cls, v: list[ModelEntry]) -> list[ModelEntry]:
        labels = [m.id_label for m in v]
        dup = {x for x in labels if labels.count(x) > 1}
        if dup:
            raise ValueError(f"models listed twice: {', '.join(sorted(dup))} "
                             "(give one of them another preset, options or a label)")
        return v


class _KeyError(ValueError):
    """A cross-key problem that belongs to one key path (reported there, not at the top)."""

    def __init__(self, msg: str, loc: tuple):
        super().__init__(msg)
        self.loc = loc


def _check_size_option(model: str, key: str, value: Any) -> None:
    """Size options (input_dim, hidden, widths, ...) are positive integers, or lists of them:
    `hidden: [-5]` or `input_dim: 0` would only fail inside a worker, an hour later."""
    if key == "preset":
        return
    items = value if isinstance(value, list) else [value]
    if isinstance(value, list) and not value:
        raise ValueError(f"option {key!r} of model {model} is an empty list")
    for x in items:
        if isinstance(x, bool) or not isinstance(x, int):
            raise ValueError(f"option {key!r} of model {model} must be a positive integer"
                             f"{' or a list of them' if isinstance(value, list) else ''}, "
                             f"got {_short(x)}")
        if not 0 < x <= 1_000_000:
            raise ValueError(f"option {key!r} of model {model} must be between 1 and "
                             f"1,000,000, got {x}")


def _check_device(d: str) -> str:
    if not DEVICE_RE.fullmatch(d):
        raise ValueError(f"malformed device {_short(d)}; use 'cpu' or 'cuda:N' (e.g. cuda:0)")
    return d


def _unique(values: list, what: str) -> list:
    seen = []
    for x in values:
        if x in seen:
            raise ValueError(f"duplicate {what} {_short(x)}")
        seen.append(x)
    return values


def _check_choice(value: str, allowed: tuple[str, ...], what: str,
                  shown: tuple[str, ...] | None = None) -> str:
    if value in allowed:
        return value
    close = difflib.get_close_matches(str(value)[:200], allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown {what} {_short(value)}{hint}; allowed: "
                     f"{', '.join(shown or allowed)}")


# ---------------------------------------------------------------------------------------------

def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> Config:
    """Load, override and validate. Every problem becomes a UserError naming file and key."""
    return from_file(read(path), overrides)


def from_file(got: ConfigFile, overrides: dict[str, Any] | None = None) -> Config:
    """Validate a config file already read (mlbench.config.configfile: its file and YAML errors come
    before pydantic loads)."""
    return validate(_absolute_data_paths(got.raw, got.path.resolve().parent), got.where,
                    overrides)


def _absolute_data_paths(raw: dict, base: Path) -> dict:
    """A model's `data:` is relative to its config file; stored absolute, so a resumed run (from
    the snapshot in run.json, in any working directory) reads the same file."""
    models = raw.get("models")
    if not isinstance(models, list):
        return _absolute_pythons(raw, base)
    fixed = []
    for m in models:
        if isinstance(m, dict) and isinstance(m.get("data"), str) and m["data"].strip() \
                and not Path(m["data"]).is_absolute():
            m = {**m, "data": str(base / m["data"])}
        if isinstance(m, dict) and isinstance(m.get("source"), str) and m["source"].strip() \
                and "\x00" not in m["source"]:
            from . import usermodel
            try:  # the user's model file, likewise (a module name: found from the config's folder)
                m = {**m, "source": usermodel.resolve(m["source"], base)}
            except ValueError:
                pass  # validation reports it, naming the key
        fixed.append(m)
    return _absolute_pythons({**raw, "models": fixed}, base)


def _absolute_pythons(raw: dict, base: Path) -> dict:
    """A relative `framework_settings.<fw>.python` is relative to the config file, stored
    absolute (not resolved: a virtualenv's python is a link that must stay one), so --resume
    works from any directory."""
    settings = raw.get("framework_settings")
    if not isinstance(settings, dict):
        return raw
    fixed = {}
    for fw, s in settings.items():
        py = s.get("python") if isinstance(s, dict) else None
        if isinstance(py, str) and py.strip() and "\x00" not in py \
                and not os.path.isabs(os.path.expanduser(py)):
            s = {**s, "python": os.path.normpath(base / py)}
        elif isinstance(py, str) and py.startswith("~"):
            s = {**s, "python": os.path.expanduser(py)}
        fixed[fw] = s
    return {**raw, "framework_settings": fixed}


def validate(raw: dict, where: str, overrides: dict[str, Any] | None = None) -> Config:
    _check_shape(raw, where)
    data = dict(raw)
    given = {k for k, v in (overrides or {}).items() if v is not None}
    for key in given:
        data[key] = overrides[key]
    if "models" in given:
        data["models"] = _select_models(overrides["models"], raw.get("models"))
    try:
        conf = Config.model_validate(data)
    except ValidationError as exc:
        raise _user_error(exc, list(data), where, given) from None
    except RecursionError:
        raise UserError("config is recursive (a YAML alias refers to itself)", where) from None
    if not selection.selects_any(conf):
        origin = "command line" if given else where
        raise UserError("the exclude rules remove every cell: nothing would run (loosen "
                        "exclude, or add frameworks, models, devices or batch sizes)",
                        f"{origin}: exclude" if conf.exclude else origin)
    from . import sweepcheck
    sweepcheck.check(conf, raw, where)
    return conf


def _select_models(names: Any, configured: Any) -> Any:
    """`--models NAME ...`: a user's model of the config (one with a source) is picked by its
    name or label, with its source and options; any other name is a built-in model."""
    if not isinstance(names, list) or not isinstance(configured, list):
        return names
    own: dict[str, Any] = {}
    for m in configured:
        if isinstance(m, dict) and m.get("source") is not None:
            for key in (m.get("label"), m.get("name")):
                if isinstance(key, str):
                    own.setdefault(key, m)
    return [own.get(n, n) if isinstance(n, str) else n for n in names]


def _user_error(exc: ValidationError, order: list[str], where: str, given: set) -> UserError:
    """One line for the first problem in file order (a missing key comes last: it must not
    hide a real bad key), with a count of the others."""
    def rank(e: dict) -> tuple:
        top = str(e["loc"][0]) if e["loc"] else ""
        return (e["type"] == "missing", order.index(top) if top in order else len(order))

    errors = sorted((_normalise(e) for e in exc.errors()), key=rank)
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
        close = difflib.get_close_matches(str(key)[:200], parent, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        msg = f"unknown key {_short(key)}{hint}"
    elif err["type"] in ("int_parsing", "int_type", "float_parsing", "string_type",
                         "list_type", "bool_parsing", "dict_type", "model_type",
                         "int_from_float", "bool_type", "float_type", "literal_error",
                         "greater_than_equal", "greater_than", "less_than_equal",
                         "string_too_short"):
        msg = f"{msg}, got {_short(err.get('input'))}"
        if loc == "memory_limit_mb" and err["type"] == "greater_than_equal":
            msg += (f"; below {MIN_MEMORY_MB} MB a worker cannot even import numpy and start "
                    "(use at least that, or leave memory_limit_mb out)")
    others = len(errors) - 1
    if others:
        msg += f" (and {others} more problem{'s' if others > 1 else ''}: " + ", ".join(
            _loc(e["loc"]) or "(top level)" for e in errors[1:4]) + (" ..." if others > 3
                                                                      else "") + ")"
    origin = "command line" if loc.split(".")[0].split("[")[0] in given else where
    return UserError(msg, f"{origin}: {loc}" if loc else origin)


def _normalise(err: dict) -> dict:
    """A cross-key check names its own key path (see _KeyError)."""
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, _AtKey):  # knows its whole key path, e.g. "frameworks[0].label"
        parts = tuple(int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", cause.loc))
        return {**err, "loc": parts, "msg": str(cause)}
    if isinstance(cause, _KeyError):
        return {**err, "loc": tuple(err["loc"]) + tuple(cause.loc), "msg": str(cause)}
    return err


def notes(config: Config) -> list[str]:
    """Warnings about a valid config: options for a framework that is not in the sweep (they
    would be silently unused), the user's data cast to the model's dtype."""
    out = []
    for fw, settings in config.framework_settings.items():
        if fw not in config.base_frameworks and settings.options:
            out.append(f"framework_settings.{fw}.options are not used: {fw} is not in "
                       f"frameworks ({', '.join(config.base_frameworks)})")
    for m in config.models:
        info = m.data_info
        if info is not None and info.note:
            out.append(info.note)
    return out


def differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Key paths whose values differ between two dumped configs (output_dir aside: where a
    run lives is the command line's business)."""
    out = []
    for key in sorted(set(a) | set(b), key=str):
        if not prefix and key == "output_dir":
            continue
        va, vb = a.get(key), b.get(key)
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += differences(va, vb, path)
        elif va != vb:
            out.append(path)
    return out


_UNION_TAGS = ("bool", "int", "float", "str", "framework name", "framework variant")


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
    if loc and loc[-1] == "framework variant":
        return list(FrameworkVariant.model_fields)
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
    return text if len(text) <= MAX_ECHO else text[:MAX_ECHO] + "…"


def dump(config: Config) -> dict:
    return config.model_dump(mode="json")
