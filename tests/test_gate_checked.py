"""The console and the page say exactly what the equivalence gate checked: "passed" only when
numbers were compared and agreed; rows with nothing compared are named for what they are ("numerics
unchecked ... no shared weights", "only framework"); a builder error is not a numerical
disagreement; the CLI gate table shows every reference whole. Framework-free (planted rows)."""
from __future__ import annotations

import json

import fakestore as fs
from mlbench.run import gate, preflight
from mlbench.analysis import gate_verdicts
from mlbench.config.schema import Config
from mlbench.report import build_report

UNCHECKED = gate_verdicts.NUMERICS_UNCHECKED
ALONE = "only framework: nothing to compare with"


def _row(fw, label, passed, reason=None, reference="-", status="ok"):
    return gate_verdicts.GateRow(model="mlp", model_label=label, device="cpu", precision="fp32",
                                 framework=fw, reference=reference, passed=passed,
                                 reason=reason, status=status)


UNCHECKED_ROWS = [_row("pytorch", "mine", None, UNCHECKED), _row("jax", "mine", None, UNCHECKED),
                  _row("pytorch", "tab", None, ALONE)]


def test_nothing_compared_is_never_called_passed():
    text = gate_verdicts.checked_text(UNCHECKED_ROWS)
    assert "passed" not in text
    assert text == ("equivalence gate: no numbers compared; numerics unchecked for mine (jax, "
                    "pytorch: no shared weights); only framework for tab (pytorch)")
    report = gate_verdicts.GateReport(rows=UNCHECKED_ROWS)
    assert report.render_text().splitlines()[-1] == text


def test_passed_alone_only_when_every_row_agreed_and_the_rest_is_named():
    ok = [_row("pytorch", "mlp", True, reference="numpy"), _row("jax", "mlp", True,
                                                                reference="numpy")]
    assert gate_verdicts.checked_text(ok) == "equivalence gate: passed"
    text = gate_verdicts.checked_text(ok + UNCHECKED_ROWS[:2])
    assert text == ("equivalence gate: passed for mlp (jax, pytorch); numerics unchecked for "
                    "mine (jax, pytorch: no shared weights)")


def test_the_console_of_a_run_says_what_the_gate_checked(tmp_path, monkeypatch):
    monkeypatch.setattr(gate, "run", lambda *a, **k: gate_verdicts.GateReport(
        rows=UNCHECKED_ROWS, seconds=2.0))
    config = Config(frameworks=["pytorch", "jax"], models=[{"name": "mlp", "preset": "tiny"}],
                    batch_sizes=[16], threads=1)
    said: list[str] = []
    preflight.run_gate(config, tmp_path, said.append, again=True)
    assert not any("gate: passed" in line for line in said)
    assert any(line.startswith("equivalence gate: no numbers compared; numerics unchecked for "
                               "mine (jax, pytorch: no shared weights); only framework for tab")
               for line in said), said


def test_a_builder_error_is_named_apart_from_a_disagreement():
    got = {"pytorch": {"status": "error", "reason": "KeyError: 'conv9'", "stage": "build"},
           "jax": {"status": "error", "reason": "ValueError: NaN", "stage": "run"}}
    rows, _ = gate._judge("cnn", "cnn", "cpu", "fp32", got, None)
    by = {r.framework: r for r in rows}
    assert by["pytorch"].reason == "builder error: KeyError: 'conv9'"
    assert by["pytorch"].passed is False and by["pytorch"].status == "error"
    assert not by["jax"].reason.startswith("builder error")


def test_the_gate_table_shows_every_reference_whole():
    rows = [_row("tensorflow", "cnn", False, "disagrees with jax, tensorflow-xla",
                 reference="pairwise: jax, tensorflow-xla"),
            _row("tensorflow-xla", "cnn", True, reference="pairwise: jax, tensorflow")]
    text = gate_verdicts.GateReport(rows=rows).render_text()
    lines = text.splitlines()
    assert "pairwise: jax, tensorflow-xla" in lines[1]
    assert "pairwise: jax, tensorflow " in lines[2]
    # columns stay aligned: the error columns start at the same offset on every row
    assert len({line.index("       -") for line in lines[1:3]}) == 1


def test_the_report_box_says_what_the_gate_did_not_compare(tmp_path):
    run = fs.write_store(tmp_path / "r", [fs.attempt("pytorch"), fs.attempt("jax")])
    doc = gate_verdicts.GateReport(rows=UNCHECKED_ROWS).to_json()
    (run / "verify.json").write_text(json.dumps(doc))
    html = build_report(run, tmp_path / "o").read_text()
    box = html.split("What this report cannot show", 1)[1].split("</section>", 1)[0]
    assert ("Equivalence gate: no numbers were compared; numerics unchecked for mine (no shared "
            "weights); only framework for tab") in box
