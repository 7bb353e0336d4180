"""results.json's JSON Schema types every part of the document, not only `summaries`: the
attempt records (status enum, metrics and raw samples numeric), run.json (configuration
required), the per-cell summaries. An altered field is a validation error, both for the pydantic
models mlbench validates with and for the shipped schema file (with jsonschema, when installed);
real documents (a dummy-framework run, a results.json in the stored record format) validate."""
from __future__ import annotations

import copy
import json

import pydantic
import pytest

import fakestore as fs
from cliutil import dummy_config, run_inproc
from mlbench.results import store, summary


@pytest.fixture(scope="module")
def dummy_doc(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("schema-types")
    rc, _, _ = run_inproc(["run", "--config", str(dummy_config(tmp)), "--no-report",
                           "--output", str(tmp / "r")])
    assert rc == 0
    return json.loads((tmp / "r" / "results.json").read_text())


@pytest.fixture(scope="module")
def stored_doc():
    """results.json as Store.finalize writes it for a stored run in the record format of 0.2
    (fakestore: the on-disk format), failures included."""
    latest = store.latest_attempts(fs.sweep(60, steps=20, latencies=10, seed=4, fail_rate=0.2))
    return json.loads(json.dumps({"schema": store.SCHEMA, "run": fs.run_doc(), "cells": latest,
                                  **summary.annotate(latest)}))


def _schema_validator():
    jsonschema = pytest.importorskip("jsonschema")
    return jsonschema.Draft202012Validator(json.loads(summary.SCHEMA_FILE.read_text()))


def _set(doc, path, value):
    d = copy.deepcopy(doc)
    o = d
    for k in path[:-1]:
        o = o[k]
    if value is DELETE:
        del o[path[-1]]
    else:
        o[path[-1]] = value
    return d


class _Delete:
    """Marks a key to remove; a stable repr, so pytest-xdist's workers collect the same ids."""

    def __repr__(self) -> str:
        return "<deleted>"


DELETE = _Delete()
ALTERED = [
    (("cells", 0, "status"), "bogus"),
    (("cells", 0, "status"), None),
    (("cells", 0, "metrics"), 5),
    (("cells", 0, "metrics", "train", "step_times_s"), "x"),
    (("cells", 0, "metrics", "train", "step_times_s"), [0.1, "x"]),
    (("cells", 0, "metrics", "train", "step_times_s"), [0.1, -1.0]),
    (("cells", 0, "metrics", "train", "first_step_s"), "slow"),
    (("cells", 0, "metrics", "inference", "latencies_s"), {"p50": 1}),
    (("cells", 0, "metrics", "eval", "accuracy"), 1.5),
    (("cells", 0, "metrics", "params", "trainable"), "1000"),
    (("cells", 0, "metrics", "memory", "host_peak_rss_bytes"), -5),
    (("cells", 0, "metrics", "flops_per_sample", "forward"), "many"),
    (("cells", 0, "batch_size"), "32"),
    (("cells", 0, "repeat"), -1),
    (("cells", 0, "cell_id"), ""),
    (("cells", 0, "hello"), "hi"),
    (("cells", 0, "wall_s"), "10 s"),
    (("cells",), {"a": 1}),
    (("run", "config"), DELETE),
    (("run", "config"), "quick"),
    (("run", "frameworks"), ["pytorch"]),
    (("schema",), "1"),
    (("summaries", 0, "train_samples_per_s", "median"), "fast"),
    (("summaries", 0, "repeats"), 1.5),
    (("summaries", 0, "warnings"), "none"),
]


def test_real_documents_validate(dummy_doc, stored_doc):
    for doc in (dummy_doc, stored_doc):
        assert doc["cells"] and doc["summaries"]
        summary.validate(doc)
    assert {c["status"] for c in stored_doc["cells"]} - {"ok"}, "failures included"


@pytest.mark.parametrize("path,value", ALTERED, ids=lambda x: str(x)[:40])
def test_an_altered_field_is_a_validation_error(dummy_doc, path, value):
    bad = _set(dummy_doc, path, value)
    with pytest.raises(pydantic.ValidationError):
        summary.validate(bad)


def test_the_shipped_schema_file_types_the_same(dummy_doc, stored_doc):
    v = _schema_validator()
    for doc in (dummy_doc, stored_doc):
        assert not list(v.iter_errors(doc))
    for path, value in ALTERED:
        assert list(v.iter_errors(_set(dummy_doc, path, value))), path
