"""The attempt record: one attempt of one cell, a line of results.jsonl and a cell of results.json.

Owns the record's one definition: its typed model (Attempt and the metrics inside it; the
store's readers validate against it, the protocol checks a worker's result against its Metrics,
results.schema.json is generated from it, aggregate.flatten reads its typed fields), its format
version (FORMAT, written into every new record by the store) and the upgrade of stored records
of older formats to the current one (`upgrade`: pure, applied on read; a stored file is never
rewritten). Workers know nothing of it: they write plain JSON (workers/wire.py), the parent
validates.

Formats: 2 is every record without a `format` key (mlbench 0.1 and 0.2 wrote none; 0.1's are
0.2's shape minus a few fields the step fills in); 3 is mlbench 0.3's. A record of a format
above FORMAT was written by a newer mlbench: NewerFormat, never a guess.
The models check the fields readers rely on and keep every other key (extra="allow"): nothing
a worker measured is dropped for being unknown here. Must not import any ML framework.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

FORMAT = 3  # also Attempt.format's literal
LEGACY_FORMAT = 2  # a record without `format`: mlbench 0.1 and 0.2
STATUSES = ("ok", "skipped", "failed", "oom", "timeout", "crashed", "interrupted")

NonNeg = Annotated[float, Field(ge=0)]
NonNegInt = Annotated[int, Field(ge=0)]
Seconds = NonNeg | None


class _Open(BaseModel):
    # strict: "32" is no batch size and true no sample; no NaN or infinity (JSON has neither)
    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)


class SteadyBlock(_Open):
    steps: NonNegInt
    seconds: NonNeg


class TrainMetrics(_Open):
    steps_per_epoch: NonNegInt | None = None
    samples_per_step: NonNeg | None = None
    steps_per_block: NonNegInt | None = None
    steady_steps: NonNegInt | None = None
    first_step_s: Seconds = Field(None, description="first training step: trace/compile + one")
    warmup_s: Seconds = None
    steady_s: Seconds = None
    warmup_step_times_s: list[NonNeg] | None = None
    step_times_s: list[NonNeg] | None = Field(None, description="steady-state step times, s "
                                              "(each the mean step time of one block)")
    steady_blocks: list[SteadyBlock] | None = None
    epoch_times_s: list[NonNeg] | None = None
    epoch_loss_means: list[float | None] | None = None
    epoch_losses: list[float | None] | None = None


class EvalMetrics(_Open):
    loss: float | None = None
    accuracy: Annotated[float, Field(ge=0, le=1)] | None = None
    time_s: Seconds = None
    samples: NonNegInt | None = None


class InferenceMetrics(_Open):
    warmup_iterations: NonNegInt | None = None
    warmup_s: Seconds = None
    batch_size: NonNegInt | None = None
    latencies_s: list[NonNeg] | None = None
    loops: Annotated[int, Field(ge=1)] | None = Field(None, description="calls timed together "
                                                      "in one latency sample")
    min_sample_s: Seconds = None
    export_s: Seconds = Field(None, description="an exported runtime's export + load time")


class MemoryMetrics(_Open):
    peak_device_bytes: NonNegInt | None = None
    host_baseline_rss_bytes: NonNegInt | None = None
    host_peak_rss_bytes: NonNegInt | None = None


class ParamCounts(_Open):
    trainable: NonNegInt | None = None
    non_trainable: NonNegInt | None = None


class FlopsPerSample(_Open):
    forward: NonNeg | None = Field(None, description="analytic forward FLOPs of one sample")
    train_step: NonNeg | None = Field(None, description="training FLOPs of one sample: 3 x "
                                      "forward (forward + backward)")


class Metrics(_Open):
    """What a worker measured (its result message's `metrics`, stored as the record's)."""
    params: ParamCounts | None = None
    flops_per_sample: FlopsPerSample | None = None
    train: TrainMetrics | None = None
    eval: EvalMetrics | None = None
    inference: InferenceMetrics | None = None
    memory: MemoryMetrics | None = None
    settings: dict[str, Any] | None = None
    model_spec: dict[str, Any] | None = None
    data_hash: str | None = None
    serving: dict[str, Any] | None = None
    measurement: dict[str, Any] | None = None


class Hello(_Open):
    """A worker's hello message (stored as the record's `hello`)."""
    pid: int | None = None
    python: str | None = None
    framework: str | None = None
    framework_version: str | None = None
    device_name: str | None = None
    import_s: Seconds = None
    cpu_affinity: list[int] | None = None
    visible_devices: str | None = None


class ContentionPhase(_Open):
    """Other processes' CPU use during one phase of a cell (mlbench.run.contention)."""
    wall_s: float
    other_cpu_s: float
    other_cores: float
    cores_available: int
    cell_cores: int | None = None


class Attempt(_Open):
    """One attempt of one cell, in the current format, raw samples included."""
    format: Literal[3] = Field(FORMAT, description="the record's format version (absent in "
                               "records of mlbench 0.1 and 0.2: read as 2, upgraded)")
    cell_id: str = Field(min_length=1, max_length=1000)
    repeat: int = Field(0, ge=0, le=1_000_000)
    order: int = 0
    status: Literal[STATUSES]  # type: ignore[valid-type]
    reason: str | None = None
    run_id: str | None = None
    fingerprint: str | None = None
    framework: str | None = Field(None, description="the competitor: a framework or its variant")
    base_framework: str | None = Field(None, description="the framework the variant runs on")
    mode: str | None = None
    mode_settings: dict[str, Any] | None = None
    model: str | None = None
    model_label: str | None = None
    model_options: dict[str, Any] | None = None
    device: str | None = None
    batch_size: NonNegInt | None = None
    precision: str | None = None
    tf32: bool | None = Field(None, description="the request's TF32 flag")
    command: list[str] | None = None
    rerun: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    wall_s: Seconds = None
    exit_code: int | None = None
    signal: str | None = None
    machine_before: dict[str, Any] | None = None
    device_before: dict[str, Any] | None = None
    device_after: dict[str, Any] | None = None
    gpu: dict[str, Any] | None = None
    energy: dict[str, Any] | None = None
    contention: dict[str, ContentionPhase] | None = None  # phase -> figures
    hello: Hello | None = None
    metrics: Metrics | None = None
    host_peak_rss_bytes: NonNegInt | None = None
    stderr_tail: str | None = None
    stderr_log: str | None = None
    traceback: str | None = None
    protocol_noise: list[str] | None = None
    leftover_processes: str | None = None
    placement: dict[str, Any] | None = None
    retry: dict[str, Any] | None = None  # on_contention: retry: the attempt this one replaces


# --- formats ------------------------------------------------------------------------------------

class NewerFormat(ValueError):
    """A record written by a newer mlbench: its format is above FORMAT."""

    def __init__(self, version: int):
        super().__init__(f"a record of format {version}, written by a newer mlbench (this one "
                         f"reads formats {LEGACY_FORMAT} to {FORMAT}): read it with that "
                         "mlbench or a newer one")
        self.version = version


def format_of(rec: dict) -> int:
    """The format a record was written in; ValueError for a `format` no mlbench writes."""
    version = rec.get("format", LEGACY_FORMAT)
    if type(version) is not int or version < LEGACY_FORMAT:
        raise ValueError(f"format: {str(version)[:20]} is no record format")
    return version


def _from_2(rec: dict) -> dict:
    """Format 2 (no `format` key: mlbench 0.1 and 0.2) -> 3 (mlbench 0.3). Fills in what those
    versions left implicit, from what the record itself holds; drops nothing measured:
    - `schema: 1`, the results.json document's version repeated on every line, gives way to
      `format`, the record's own;
    - base_framework and mode: 0.1 records before framework variants ran the framework itself,
      in its default mode;
    - tf32, the request's TF32 flag, joined the record in 0.3; before, only the worker's own
      settings said it (`tf32`; JAX: `tf32_requested`);
    - metrics.train.epoch_loss_means: early 0.1 workers stored the per-epoch mean losses as
      `epoch_losses` (kept as well);
    - metrics.train.warmup_s: early 0.1 workers stored only the warm-up steps' times: their sum;
    - metrics.inference.loops: before 0.1's calibrated loops, a latency sample timed one call.
    A value of the wrong type is left as it is, for the reader's validation to name."""
    out = {k: v for k, v in rec.items() if k != "schema"}
    out["format"] = 3
    if "framework" in out:
        out.setdefault("base_framework", out["framework"])
    out.setdefault("mode", "default")
    metrics = out.get("metrics")
    if not isinstance(metrics, dict):
        return out
    metrics = out["metrics"] = dict(metrics)
    settings = metrics.get("settings") if isinstance(metrics.get("settings"), dict) else {}
    if "tf32" not in out:
        flags = [settings.get(k) for k in ("tf32", "tf32_requested")]
        out["tf32"] = next((f for f in flags if isinstance(f, bool)), None)
    train = metrics.get("train")
    if isinstance(train, dict):
        train = metrics["train"] = dict(train)
        if "epoch_loss_means" not in train and "epoch_losses" in train:
            train["epoch_loss_means"] = train["epoch_losses"]
        warm = train.get("warmup_step_times_s")
        if "warmup_s" not in train and isinstance(warm, list) and warm and all(
                type(w) in (int, float) for w in warm):
            train["warmup_s"] = float(sum(warm))
    inference = metrics.get("inference")
    if isinstance(inference, dict) and "loops" not in inference:
        metrics["inference"] = {**inference, "loops": 1}
    return out


# format n -> the step that returns the record in format n + 1
STEPS = {2: _from_2}


def upgrade(rec: dict) -> dict:
    """`rec` in the current format: each step from its format to the next, in turn. Pure: a
    record already current is returned as it is, any other as a new dict (`rec` untouched).
    NewerFormat for a record of a newer mlbench; ValueError for a `format` no mlbench writes."""
    version = format_of(rec)
    if version > FORMAT:
        raise NewerFormat(version)
    while version < FORMAT:
        rec = STEPS[version](rec)
        version += 1
    return rec


# --- the typed reading of any record ------------------------------------------------------------

_PLACEHOLDERS = {"cell_id": "?", "status": "crashed"}  # what a view validates in their stead


def view(rec: Any) -> Attempt:
    """The typed reading of a record, whatever it holds: upgraded, then validated, with every
    value that does not validate read as absent (a sample left out of its list, a field None,
    a required one too: cell_id and status). The store hands on only records that validate
    whole (a damaged one is skipped there, with a warning); this lets every reader of a record
    (aggregate.flatten) read typed fields even of a partial one built in memory."""
    data = dict(rec) if isinstance(rec, dict) else {}
    try:
        data = upgrade(data)
    except NewerFormat:
        raise
    except ValueError:
        data = upgrade({k: v for k, v in data.items() if k != "format"})
    blank: set[str] = set()
    while True:
        try:
            model = Attempt.model_validate(data)
        except ValidationError as exc:
            cut = _without(data, [e["loc"] for e in exc.errors()], blank)
            if cut == data:  # no value to take away (the record as a whole): identity only
                cut, blank = dict(_PLACEHOLDERS, format=FORMAT), set(_PLACEHOLDERS)
            data = cut
            continue
        except RecursionError:  # nested beyond any record mlbench writes: identity only
            data, blank = dict(_PLACEHOLDERS, format=FORMAT), set(_PLACEHOLDERS)
            continue
        for name in blank:
            setattr(model, name, None)
        return model


def _without(data: dict, locs: list[tuple], blank: set[str]) -> dict:
    """`data` less the values at `locs` (pydantic error locations): each goes from its
    container, a dict key or a list item; a required field gets its placeholder instead."""
    data = _copy_along(data, locs)
    cut: dict[int, tuple[Any, list]] = {}
    for loc in locs:
        if len(loc) == 1 and loc[0] in _PLACEHOLDERS and loc[0] not in blank:
            data[loc[0]] = _PLACEHOLDERS[loc[0]]
            blank.add(loc[0])
            continue
        parent, key, node = None, None, data
        for part in loc:  # down to the deepest value that exists (a missing key: its container)
            if isinstance(node, dict) and part in node or isinstance(node, list) and \
                    isinstance(part, int) and 0 <= part < len(node):
                parent, key, node = node, part, node[part]
            else:
                break
        if parent is None:
            continue
        if isinstance(parent, list):
            cut.setdefault(id(parent), (parent, []))[1].append(key)
        else:
            parent.pop(key, None)
    for parent, keys in cut.values():
        for k in sorted(set(keys), reverse=True):
            del parent[k]
    return data


def _copy_along(data: dict, locs: list[tuple]) -> dict:
    """A copy of `data` in which every container on the way to a location is new (the
    caller's record is never changed)."""
    data = dict(data)
    for loc in locs:
        node = data
        for part in loc[:-1]:
            child = node[part] if (isinstance(node, dict) and part in node) or (
                isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)) \
                else None
            if isinstance(child, dict):
                child = dict(child)
            elif isinstance(child, list):
                child = list(child)
            else:
                break
            node[part] = child
            node = child
    return data
