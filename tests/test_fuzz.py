"""Hypothesis fuzzing of what a user or a damaged disk can hand mlbench (issue 14): YAML
documents and config mappings, and random JSON in every field of a stored attempt record.
Promises: only a config, a UserError (exit 2) or a clean exit 0/1 comes out, never a traceback;
reading never changes what is stored. Example counts are kept small (the whole file runs in well
under 30 s); each test prints how many examples it tried (`pytest -s` shows them)."""
from __future__ import annotations

import json
import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

import fakestore
from cliutil import run_inproc
from mlbench.config import schema as config
from mlbench.results import store
from mlbench.errors import UserError

FAST = settings(max_examples=100, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=15, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
                    st.sampled_from(["pytorch", "jax", "dummy", "mlp", "cnn", "cpu", "cuda:0",
                                     "fp32", "bf16", "tiny", "", "-1", "<<", "*a"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) |
                      st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
KEYS = list(config.Config.model_fields)
configs = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=10), values, max_size=8)
VALID = {"frameworks": ["dummy"], "models": ["mlp"], "batch_sizes": [2]}


class Count:
    def __init__(self, name: str):
        self.name, self.n = name, 0

    def __call__(self) -> None:
        self.n += 1

    def report(self) -> None:
        print(f"\n[fuzz] {self.name}: {self.n} examples")


def _validate(raw) -> None:
    try:
        conf = config.validate(raw, "fuzz.yaml")
    except UserError as exc:
        assert exc.what and exc.where and exc.where.startswith("fuzz.yaml"), exc.where
        return
    assert conf.frameworks and conf.models and conf.batch_sizes


@pytest.mark.slow  # a second or more: a real sweep, process or scan
def test_random_config_mappings_are_a_config_or_one_user_error():
    count = Count("config mappings")

    @FAST
    @given(configs)
    def run(raw):
        count()
        _validate(raw)

    run()
    count.report()
    assert count.n >= 80


def test_random_values_in_one_key_of_a_valid_config():
    count = Count("one key of a valid config")

    @FAST
    @given(st.sampled_from(KEYS), values)
    def run(key, value):
        count()
        _validate({**VALID, key: value})

    run()
    count.report()
    assert count.n >= 80


@pytest.mark.slow  # a second or more: a real sweep, process or scan
def test_random_model_entries_and_options():
    count = Count("model entries")
    entry = st.fixed_dictionaries({"name": st.sampled_from(["mlp", "cnn", "lstm",
                                                            "transformer", "x"])},
                                  optional={"preset": values, "options": st.dictionaries(
                                      st.sampled_from(["hidden", "input_dim", "widths",
                                                       "blocks", "n_heads", "seq_len", "x"]),
                                      values, max_size=3), "label": values, "data": values,
                                      "train_samples": values})
    fw_opts = st.dictionaries(st.sampled_from(["pytorch", "tensorflow", "jax", "numpy"]),
                              st.fixed_dictionaries({"options": st.dictionaries(
                                  st.sampled_from(["compile", "jit_compile", "donate",
                                                   "channels_last", "x"]), scalars,
                                  max_size=2)}), max_size=2)

    @FAST
    @given(st.lists(entry, min_size=1, max_size=3), fw_opts)
    def run(models, settings_):
        count()
        _validate({**VALID, "frameworks": ["pytorch"], "models": models,
                   "framework_settings": settings_})

    run()
    count.report()
    assert count.n >= 80


def test_random_yaml_documents():
    count = Count("YAML documents")
    docs = st.one_of(
        st.text(max_size=200),
        values.map(lambda v: yaml.safe_dump(v) if not _has_nan(v) else "a: .nan"),
        st.lists(st.sampled_from(["frameworks: [dummy]", "models: [mlp]", "batch_sizes: [2]",
                                  "x: &a [1]", "y: *a", "<<: {epochs: 2}", "- 1", "  a: 1",
                                  "\t", "epochs: !!python/none", "k: !!binary aGk=", "---",
                                  "z: {<<: [*a]}", "? [1]\n: 2", "'", "%YAML 1.1"]),
                 max_size=6).map("\n".join))

    @FAST
    @given(docs)
    def run(text):
        count()
        try:
            raw = config.parse_yaml(text.encode("utf-8", "surrogatepass"), "fuzz.yaml")
        except UserError as exc:
            assert exc.where.startswith("fuzz.yaml")
            return
        _validate(raw)

    run()
    count.report()
    assert count.n >= 80


def _has_nan(v) -> bool:
    if isinstance(v, float):
        return not math.isfinite(v)
    if isinstance(v, dict):
        return any(_has_nan(x) for x in v.values())
    if isinstance(v, list):
        return any(_has_nan(x) for x in v)
    return False


# --- stored records: random JSON in each field of an attempt ------------------------------
FIELDS = ["cell_id", "repeat", "status", "order", "framework", "model", "device", "batch_size",
          "precision", "reason", "wall_s", "metrics", "hello", "exit_code", "signal",
          "host_peak_rss_bytes", "fingerprint", "model_label", "stderr_tail"]
METRIC_PATHS = ["train", "train.step_times_s", "train.epoch_losses", "train.samples_per_step",
                "eval", "eval.accuracy", "inference.latencies_s", "memory.peak_device_bytes",
                "params.trainable", "flops_per_sample", "settings"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**64, 2**64) |
    st.floats(allow_nan=False, allow_infinity=False) |
    st.text(max_size=20), lambda inner: st.lists(inner, max_size=4) |
    st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)


def _damaged_store(tmp_path, edits) -> tuple:
    atts = [{**fakestore.attempt(fw, batch_size=bs), "order": i}
            for i, (fw, bs) in enumerate([(f, b) for f in ("pytorch", "jax") for b in (8, 16)], 1)]
    for i, (field, value) in edits:
        rec = atts[i % len(atts)]
        if field.startswith("metrics."):
            node = rec.setdefault("metrics", {}) if isinstance(rec.get("metrics"), dict) else \
                rec.__setitem__("metrics", {}) or rec["metrics"]
            *parents, last = field.removeprefix("metrics.").split(".")
            for p in parents:
                if not isinstance(node.get(p), dict):
                    node[p] = {}
                node = node[p]
            node[last] = value
        else:
            rec[field] = value
    run = fakestore.write_store(tmp_path, [], fakestore.run_doc(frameworks=("pytorch", "jax")))
    (run / "results.jsonl").write_text("".join(json.dumps(a) + "\n" for a in atts))
    return run, (run / "results.jsonl").read_bytes()


edits = st.lists(st.tuples(st.integers(0, 3), st.tuples(
    st.sampled_from(FIELDS + [f"metrics.{p}" for p in METRIC_PATHS]), json_values)),
    min_size=1, max_size=4).map(lambda xs: [(i, fv) for i, fv in xs])


@pytest.mark.slow  # a second or more: a real sweep, process or scan
def test_random_fields_in_stored_records_resume_planning(tmp_path_factory, capsys):
    count = Count("stored records (resume planning, store.load)")

    @settings(max_examples=120, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(edits)
    def run(ed):
        count()
        tmp = tmp_path_factory.mktemp("fp")
        run_dir, before = _damaged_store(tmp, ed)
        loaded = store.load(run_dir)
        store.latest_attempts(loaded.attempts)
        s = store.Store(run_dir)
        latest = s.existing_attempts()
        from mlbench.run import runner
        from mlbench.run.matrix import expand
        conf = config.validate({"frameworks": ["pytorch", "jax"], "models": ["mlp"],
                                "batch_sizes": [8, 16]}, "fuzz.yaml")
        runner.select(expand(conf), latest, runner.Plan("resume"))
        runner.select(expand(conf), latest, runner.Plan("failed"))
        json.dumps(latest, allow_nan=False)
        assert (run_dir / "results.jsonl").read_bytes() == before

    run()
    capsys.readouterr()
    count.report()
    assert count.n >= 100


@pytest.mark.slow  # a second or more: a real sweep, process or scan
def test_random_fields_in_stored_records_compare_and_resume(tmp_path_factory, capsys):
    count = Count("stored records (compare + resume planning)")

    @SLOW
    @given(edits)
    def run(ed):
        count()
        tmp = tmp_path_factory.mktemp("fz")
        run_dir, before = _damaged_store(tmp, ed)
        rc, out, err = run_inproc(["compare", str(run_dir), str(run_dir)], capsys)
        assert rc in (0, 1, 2) and "Traceback" not in out + err, err
        if rc == 2:
            assert err.strip().splitlines()[-1].startswith("error: ")
        # resume planning reads the same store through the index
        s = store.Store(run_dir)
        latest = s.existing_attempts()
        from mlbench.run import runner
        from mlbench.run.matrix import expand
        conf = config.validate({"frameworks": ["dummy"], "models": ["mlp"],
                                "batch_sizes": [8, 16]}, "fuzz.yaml")
        runner.select(expand(conf), latest, runner.Plan("resume"))
        json.dumps(latest, allow_nan=False)
        assert (run_dir / "results.jsonl").read_bytes() == before

    run()
    count.report()
    assert count.n >= 12


@pytest.mark.slow  # a second or more: a real sweep, process or scan
def test_random_fields_in_stored_records_report(tmp_path_factory, capsys):
    count = Count("stored records (report)")

    @settings(max_examples=5, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(edits)
    def run(ed):
        count()
        tmp = tmp_path_factory.mktemp("fr")
        run_dir, before = _damaged_store(tmp, ed)
        rc, out, err = run_inproc(["report", "--results", str(run_dir), "--output",
                                   str(tmp / "rep")], capsys)
        assert rc in (0, 2) and "Traceback" not in out + err, err
        assert (run_dir / "results.jsonl").read_bytes() == before

    run()
    count.report()
    assert count.n >= 4


@pytest.mark.parametrize("what", ["run.json", "ceilings.json"])
def test_random_run_and_ceilings_documents(tmp_path_factory, capsys, what):
    count = Count(f"{what} documents")
    docs = st.one_of(json_values, st.dictionaries(
        st.sampled_from(["config", "sessions", "run_id", "host", "frameworks", "entries",
                         "started_at", "ceilings"]), json_values, max_size=4))

    @SLOW
    @given(docs)
    def run(doc):
        count()
        tmp = tmp_path_factory.mktemp("fd")
        run_dir, before = _damaged_store(tmp, [])
        (run_dir / what).write_text(json.dumps(doc))
        rc, out, err = run_inproc(["compare", str(run_dir), str(run_dir)], capsys)
        assert rc in (0, 1, 2) and "Traceback" not in out + err, err
        if what == "ceilings.json":
            from mlbench.analysis import ceiling
            try:
                ceiling.table(ceiling.load(run_dir))
                ceiling.best_flops(ceiling.load(run_dir))
            except UserError:
                pass
        assert (run_dir / "results.jsonl").read_bytes() == before

    run()
    count.report()
    assert count.n >= 12
