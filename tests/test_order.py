"""The run order: frameworks interleave (rotating who goes first), repeats interleave, and the
order `mlbench run` executes is the one run.json records."""
import itertools
import json

import pytest

from cliutil import run_inproc, write_config
from mlbench.config import schema as cfg
from mlbench.run import matrix, order
from mlbench.results.store import read_jsonl


def _cells(tmp_path, **fields):
    path = write_config(tmp_path / "order.yaml", **fields)
    return matrix.expand(cfg.load_config(path))


def _runs_of(seq):
    """Lengths of the maximal runs of equal values in `seq`."""
    return [len(list(g)) for _, g in itertools.groupby(seq)]


FWS = ["pytorch", "tensorflow", "jax", "numpy"]


@pytest.mark.parametrize("n_fw,models,batches,repeats", [
    (2, ["mlp"], [8, 16], 1), (2, ["mlp", "cnn"], [8], 1), (2, ["mlp", "cnn"], [8, 16, 32], 3),
    (3, ["mlp"], [8, 16], 1), (3, ["mlp", "cnn", "lstm"], [4, 8], 2), (4, ["mlp"], [1, 2, 3], 2),
    (4, ["cnn", "lstm"], [8], 1), (2, ["mlp"], [8], 2)])
@pytest.mark.parametrize("drop", range(0, 6))
def test_no_framework_runs_as_one_block(tmp_path, n_fw, models, batches, repeats, drop):
    tmp = tmp_path
    cells = _cells(tmp, frameworks=FWS[:n_fw], models=sorted(models), batch_sizes=sorted(batches),
                   repeats=repeats)
    cells = [c for i, c in enumerate(cells) if drop == 0 or i % 7 != drop]  # a resume's subset
    ran = order.interleave(cells)
    assert sorted(c.key for c in ran) == sorted(c.key for c in cells)  # a permutation
    fws = [c.framework for c in ran]
    counts = {f: fws.count(f) for f in set(fws)}
    if sum(1 for n in counts.values() if n >= 2) >= 2:
        for f, n in counts.items():
            positions = [i for i, x in enumerate(fws) if x == f]
            assert n < 2 or positions[-1] - positions[0] + 1 > n, (f, fws)  # not contiguous
    # repeats interleave: every repeat-r cell before any repeat-(r+1) cell
    reps = [c.repeat for c in ran]
    assert reps == sorted(reps)


def test_frameworks_alternate_and_the_first_rotates(tmp_path):
    cells = _cells(tmp_path, frameworks=["pytorch", "tensorflow", "jax"], models=["mlp", "cnn"],
                   batch_sizes=[8, 16], repeats=2)
    ran = order.interleave(cells)
    groups = [ran[i:i + 3] for i in range(0, len(ran), 3)]
    assert len(groups) == 2 * 2 * 2
    for g in groups:
        # one group = one (model, device, batch, precision, repeat), each framework once
        assert len({(c.model.id_label, c.batch_size, c.repeat) for c in g}) == 1
        assert sorted(c.framework for c in g) == ["jax", "pytorch", "tensorflow"]
    firsts = [g[0].framework for g in groups]
    assert firsts[:3] == ["pytorch", "tensorflow", "jax"] and firsts[3] == "pytorch"
    assert max(_runs_of([c.framework for c in ran])) == 1  # three frameworks never repeat


@pytest.mark.slow  # seconds: a real sweep, process tree or clock
def test_executed_order_is_the_recorded_order(tmp_path):
    out = tmp_path / "results"
    conf = write_config(tmp_path / "c.yaml", frameworks=["dummy", "numpy"], models=["mlp"],
                        batch_sizes=[16, 32], repeats=2, train_samples=64, eval_samples=32,
                        warmup_iterations=1, timed_iterations=2, ceiling=False, verify=False,
                        output_dir=str(out))
    rc, _, _ = run_inproc(["run", "--config", str(conf)])
    assert rc == 0
    recorded = json.loads((out / "run.json").read_text())["order"]
    executed = [[a["cell_id"], a["repeat"]] for a in read_jsonl(out / "results.jsonl")[0]]
    assert executed == recorded
    assert len(recorded) == 8 and max(_runs_of([cid.split("-")[0] for cid, _ in recorded])) <= 2
    assert [r for _, r in recorded] == [0, 0, 0, 0, 1, 1, 1, 1]
