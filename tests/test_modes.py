"""Each framework out of the box and at its best (issue 16): variants of a framework are cells of
their own (config `modes:` and variant entries), recorded with their mode, gated on their own,
and the report answers both questions with the compile cost and the break-even step count.

Fast checks use the config, the matrix, planted records and the dummy worker; one real sweep
(pytorch and tensorflow, default and best, tiny mlp on the CPU) goes through the CLI."""
import colorsys
import json

import pytest

from cliutil import by_cell, run_inproc, run_subprocess, write_config
from fakestore import attempt, run_doc, write_store
from mlbench.results import aggregate, frames, store
from mlbench.config import catalog, schema as cfg
from mlbench.run import matrix
from mlbench.report import figures, modes

BASE = {"models": [{"name": "mlp", "preset": "tiny"}], "batch_sizes": [16]}


def _conf(**kw) -> cfg.Config:
    return cfg.validate({**BASE, **kw}, "test.yaml")


# --- break-even ---------------------------------------------------------------------------------

def test_break_even_against_planted_timings():
    # compiling costs 9 s more and saves 0.5 s a step: the compiled run is ahead after 18 steps
    assert modes.break_even(10.0, 0.5, 1.0, 1.0) == pytest.approx(18.0)
    assert modes.break_even_text(18.0) == "after 18 steps"
    assert modes.break_even_text(modes.break_even(10.0, 0.7, 1.0, 1.0)) == "after 30 steps"
    assert modes.break_even_text(17.2) == "after 18 steps"  # a partial step is a step more
    # steady steps not faster: compiling never pays off, however cheap it is
    assert modes.break_even(0.5, 1.0, 1.0, 1.0) is None
    assert modes.break_even(20.0, 1.2, 1.0, 1.0) is None
    assert modes.break_even_text(None) == "never"
    # cheaper to compile and faster: ahead from the first step
    assert modes.break_even(0.5, 0.5, 1.0, 1.0) == 0.0
    assert modes.break_even_text(0.0) == "immediately"


def _variant(framework, base, mode, settings, **kw) -> dict:
    rec = attempt(framework=framework, model="mlp", **kw)
    rec.update(base_framework=base, mode=mode, mode_settings=settings)
    return rec


def _planted(tmp_path):
    """pytorch eager 10 ms/step (first step 0.11 s), compiled 5 ms/step after 3.005 s first
    step; tensorflow default 20 ms, xla 4 ms after 1.004 s; jax 6 ms (its best is its
    default). Three processes per cell, each a little off (a winner needs three)."""
    recs = [
        _variant("pytorch", "pytorch", "default", {}, step_times=[0.010] * 9, first_step=0.11),
        _variant("pytorch-compile", "pytorch", "best", {"compile": True},
                 step_times=[0.005] * 9, first_step=3.005),
        _variant("tensorflow", "tensorflow", "default", {}, step_times=[0.020] * 9,
                 first_step=0.52),
        _variant("tensorflow-xla", "tensorflow", "best", {"jit_compile": True},
                 step_times=[0.004] * 9, first_step=1.004),
        _variant("jax", "jax", "default", {}, step_times=[0.006] * 9, first_step=0.506),
    ]
    for r, k in ((1, 1.03), (2, 0.97)):
        for rec in recs[:5]:
            more = json.loads(json.dumps(rec))
            more["repeat"] = r
            more["metrics"]["train"]["step_times_s"] = [
                t * k for t in rec["metrics"]["train"]["step_times_s"]]
            recs.append(more)
    write_store(tmp_path, recs, run_doc(frameworks=("pytorch", "tensorflow", "jax")))
    return frames.load_frames(tmp_path)[3]


def test_compile_cost_and_break_even_from_the_records(tmp_path):
    cells = _planted(tmp_path)
    costs = {r["framework"]: r for r in modes.compile_costs(cells).to_dicts()}
    assert costs["pytorch-compile"]["compile_s"] == pytest.approx(3.0)
    assert costs["pytorch"]["compile_s"] == pytest.approx(0.1)
    # (3.0 - 0.1) / (0.010 - 0.005) = 580 steps; (1.0 - 0.5) / (0.020 - 0.004) = 31.25
    assert costs["pytorch-compile"]["break_even"] == pytest.approx(580)
    assert costs["pytorch-compile"]["break_even_text"] == "after 580 steps vs pytorch"
    assert costs["tensorflow-xla"]["break_even_text"] == "after 32 steps vs tensorflow"
    assert costs["jax"]["break_even"] is None and costs["jax"]["mode"] == "default"


def test_verdicts_answer_both_questions_and_name_the_winning_mode(tmp_path):
    cells = _planted(tmp_path)
    got = {v.question: v for v in modes.verdicts(cells)}
    # defaults only: jax 6 ms beats pytorch eager 10 ms and tensorflow 20 ms
    assert got["out of the box"].winner == "jax"
    assert "tensorflow-xla" not in got["out of the box"].text
    # at its best: tensorflow with XLA (4 ms) wins, and the text says which mode that is
    assert got["at its best"].winner == "tensorflow-xla"
    assert "tensorflow-xla = tensorflow best" in got["at its best"].text
    # pytorch at its best is compiled
    assert "pytorch-compile" in " ".join(got["at its best"].details)


def test_report_has_the_modes_section_and_figure(tmp_path):
    _planted(tmp_path)
    from mlbench.report import build_report
    page = build_report(tmp_path, tmp_path / "report").read_text()
    assert "Out of the box and at its best" in page and 'id="fig-compile-cost"' in page
    assert "after 580 steps vs pytorch" in page


def test_no_modes_section_for_a_plain_run(tmp_path):
    write_store(tmp_path, [attempt(framework=f) for f in ("pytorch", "jax")], run_doc())
    cells = frames.load_frames(tmp_path)[3]
    assert modes.build(cells) is None  # records without modes: every framework in default


def test_variant_is_a_shade_of_its_framework_colour():
    bases = {"pytorch": "pytorch", "pytorch-compile": "pytorch", "torch-max": "pytorch",
             "jax": "jax"}
    order = sorted(bases)
    c1 = figures.colour("pytorch-compile", order, bases)
    c2 = figures.colour("torch-max", order, bases)
    base = figures.COLOURS["pytorch"]
    assert len({c1, c2, base}) == 3 and c1 not in figures.COLOURS.values()

    def hue(c):
        return colorsys.rgb_to_hls(*(int(c[i:i + 2], 16) / 255 for i in (1, 3, 5)))[0]
    assert hue(c1) == pytest.approx(hue(base), abs=0.02)
    assert hue(c2) == pytest.approx(hue(base), abs=0.02)


def test_mfu_of_a_variant_uses_its_framework_ceiling(tmp_path):
    cells = _planted(tmp_path)
    out = aggregate.with_mfu(cells, {"pytorch": {"cpu": {"fp32": 1e9}}})
    own = dict(out.select("framework", "mfu_own").iter_rows())
    # against its own framework's ceiling: a variant uses its real framework's (pytorch's)
    assert own["pytorch-compile"] is not None and own["pytorch-compile"] > own["pytorch"]
    assert own["jax"] is None  # jax measured no ceiling of its own
    # the headline MFU has one yardstick per device and precision: every cell gets one, and it
    # ranks the cells exactly as their achieved FLOP/s do
    rows = out.select("framework", "mfu", "train_flops_s").to_dicts()
    assert all(r["mfu"] is not None for r in rows)
    assert sorted(rows, key=lambda r: r["mfu"]) == sorted(rows, key=lambda r: r["train_flops_s"])


# --- config and matrix ---------------------------------------------------------------------------

def test_modes_expand_plain_frameworks_from_the_catalog():
    conf = _conf(frameworks=["torch", "tf", "jax", "numpy"], modes=["default", "best"],
                 framework_settings={"pytorch": {"options": {"compile": True,
                                                             "channels_last": False}}})
    got = {v.label: (v.framework, v.mode, v.options) for v in conf.variants}
    assert got == {
        # the default of a [default, best] sweep is out of the box even if settings compile
        "pytorch": ("pytorch", "default", {"channels_last": False}),
        "pytorch-compile": ("pytorch", "best", {"compile": True, "channels_last": False}),
        "tensorflow": ("tensorflow", "default", {}),
        "tensorflow-xla": ("tensorflow", "best", {"jit_compile": True}),
        "jax": ("jax", "default", {}),      # its best is its default: one cell
        "numpy": ("numpy", "default", {}),  # no faster mode
    }
    assert conf.base_frameworks == ["pytorch", "tensorflow", "jax", "numpy"]
    # the plain default ([default]) leaves the entries as they are
    assert [v.label for v in _conf(frameworks=["pytorch", "jax"]).variants] == ["pytorch", "jax"]
    assert [(v.label, v.mode) for v in _conf(frameworks=["pytorch"], modes=["best"]).variants] \
        == [("pytorch-compile", "best")]


def test_variant_entries_record_their_mode_and_survive_the_snapshot():
    conf = _conf(frameworks=["pytorch", {"framework": "torch", "label": "torch-max",
                                         "options": {"compile": "max-autotune"}},
                             {"framework": "tf", "options": {"jit_compile": True}},
                             {"framework": "jax", "label": "jax-keep",
                              "options": {"donate": False}}])
    got = {v.label: v.mode for v in conf.variants}
    assert got == {"pytorch": "default", "torch-max": "best", "tensorflow-xla": "best",
                   "jax-keep": "custom"}
    again = cfg.validate(cfg.dump(conf), "run.json")  # what --resume reads back
    assert again.variants == conf.variants


def test_variant_cells_ids_requests_and_fingerprints():
    conf = _conf(frameworks=["pytorch", "tensorflow"], modes=["default", "best"],
                 framework_settings={"tensorflow": {"options": {"jit_compile": False}}})
    cells = {c.cell_id: c for c in matrix.expand(conf)}
    assert set(cells) == {f"{f}-mlp.tiny-cpu-bs16-fp32" for f in (
        "pytorch", "pytorch-compile", "tensorflow", "tensorflow-xla")}
    best = cells["pytorch-compile-mlp.tiny-cpu-bs16-fp32"]
    plain = cells["pytorch-mlp.tiny-cpu-bs16-fp32"]
    assert best.request["framework"] == "pytorch" and best.request["options"] == {"compile": True}
    assert best.competitor == "pytorch-compile" and best.mode == "best"
    assert best.fingerprint != plain.fingerprint
    assert cells["tensorflow-xla-mlp.tiny-cpu-bs16-fp32"].request["options"] == {
        "jit_compile": True}
    # a plain sweep's requests (and so the fingerprints of earlier runs) are unchanged
    old = {c.cell_id: c.fingerprint for c in matrix.expand(_conf(frameworks=["pytorch"]))}
    assert old == {plain.cell_id: plain.fingerprint}


BAD = [
    ("duplicate label", "frameworks: [{framework: torch, label: fast, options: {compile: true}},"
     " {framework: torch, label: fast}]\n", "frameworks[1]", "duplicate framework label 'fast'"),
    ("duplicate from modes", "frameworks: [pytorch, {framework: torch, label: pytorch-compile,"
     " options: {compile: true}}]\nmodes: [default, best]\n", "frameworks[1]",
     "duplicate framework label 'pytorch-compile'"),
    ("unknown framework", "frameworks: [{framework: torchy, label: t}]\n",
     "frameworks[0].framework", "unknown framework 'torchy'"),
    ("bad label", "frameworks: [{framework: torch, label: 'a/b'}]\n", "frameworks[0].label",
     "label 'a/b'"),
    ("label of another framework", "frameworks: [{framework: torch, label: jax}]\n",
     "frameworks[0].label", "another framework"),
    ("missing label", "frameworks: [{framework: torch, options: {channels_last: true}}]\n",
     "frameworks[0].label", "needs a label"),
    ("misspelt key", "frameworks: [{framework: torch, labl: x}]\n", "frameworks[0].labl",
     "did you mean 'label'"),
    ("unknown mode", "frameworks: [pytorch]\nmodes: [fastest]\n", "modes[0]", "'best'"),
    ("misspelt variant option", "frameworks: [{framework: tf, label: tf-x, options: "
     "{jit_compiel: true}}]\n", "frameworks[0].options.jit_compiel", "did you mean 'jit_compile'"),
    ("variant option of the wrong type", "frameworks: [{framework: torch, label: t-c, options: "
     "{compile: fastest}}]\n", "frameworks[0].options.compile", "must be true, false or one of"),
]


@pytest.mark.parametrize("name,text,key,words", BAD, ids=[b[0] for b in BAD])
def test_bad_variant_config_is_one_line_naming_file_and_key(tmp_path, capsys, name, text, key,
                                                           words):
    path = tmp_path / "bad.yaml"
    path.write_text(text + "models: [mlp]\nbatch_sizes: [8]\n")
    rc, out, err = run_inproc(["run", "--config", str(path), "--output", str(tmp_path / "r"),
                               "--no-report"], capsys)
    assert rc == 2 and "Traceback" not in err
    line = err.strip()
    assert "\n" not in line, err
    assert line.startswith("error: ") and words in line and f"{path}: {key})" in line, err
    assert not (tmp_path / "r").exists()


# --- a sweep of variants through the CLI: records, resume, --only (dummy worker) ----------------

def test_variants_resume_and_only_by_cell_id(tmp_path, capsys):
    conf = write_config(tmp_path / "c.yaml", batch_sizes=[1],
                        frameworks=["dummy", {"framework": "dummy", "label": "dummy-slow",
                                              "options": {"sleep_s": 0.01}}])
    out = tmp_path / "results"
    assert run_inproc(["run", "--config", str(conf), "--no-report"], capsys)[0] == 0
    cells = by_cell(out)
    assert set(cells) == {"dummy-mlp-cpu-bs1-fp32", "dummy-slow-mlp-cpu-bs1-fp32"}
    slow = cells["dummy-slow-mlp-cpu-bs1-fp32"]
    assert (slow["framework"], slow["base_framework"], slow["mode"], slow["mode_settings"]) == \
        ("dummy-slow", "dummy", "custom", {"sleep_s": 0.01})
    assert "dummy_worker.py" in " ".join(slow["command"])
    plain = cells["dummy-mlp-cpu-bs1-fp32"]
    assert (plain["framework"], plain["base_framework"], plain["mode"]) == \
        ("dummy", "dummy", "default")
    rc, _, err = run_inproc(["run", "--resume", "--output", str(out), "--no-report"], capsys)
    assert rc == 0 and "0 to run" in err
    rc, _, _ = run_inproc(["run", "--output", str(out), "--only", "dummy-slow-mlp-cpu-bs1-fp32",
                           "--no-report"], capsys)
    assert rc == 0
    attempts, _ = store.read_jsonl(out / "results.jsonl")
    ids = [a["cell_id"] for a in attempts]
    assert ids.count("dummy-slow-mlp-cpu-bs1-fp32") == 2 and ids.count(
        "dummy-mlp-cpu-bs1-fp32") == 1


def test_list_prints_the_modes_table(capsys):
    rc, out, _ = run_inproc(["list"], capsys)
    assert rc == 0
    for m in catalog.MODES.values():
        if m.best_label:
            assert m.best_label in out
    assert "jit_compile" in out and "jax.jit" in out


# --- the real thing: pytorch and tensorflow, default and best, on the CPU ------------------------

@pytest.fixture(scope="module")
def real_sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("modes")
    conf = write_config(tmp / "modes.yaml", frameworks=["pytorch", "tensorflow"],
                        modes=["default", "best"], models=[{"name": "mlp", "preset": "tiny"}],
                        batch_sizes=[16], train_samples=256, eval_samples=64,
                        warmup_iterations=2, timed_iterations=5, threads=1, timeout_s=600,
                        ceiling=False)
    proc = run_subprocess(["run", "--config", str(conf), "--report-dir", str(tmp / "report")],
                          tmp, timeout=1500)
    return proc, tmp


@pytest.mark.framework
def test_real_default_and_best_variants_run_pass_the_gate_and_the_verdict_names_modes(
        real_sweep):
    proc, tmp = real_sweep
    assert proc.returncode == 0, proc.stderr[-3000:]
    cells = by_cell(tmp / "results")
    want = {"pytorch": ("default", "none"), "pytorch-compile": ("best", "default"),
            "tensorflow": ("default", "tf.function"), "tensorflow-xla": ("best", "xla")}
    for label, (mode, compiled) in want.items():
        c = cells[f"{label}-mlp.tiny-cpu-bs16-fp32"]
        assert c["status"] == "ok", c.get("reason")
        assert c["mode"] == mode and c["framework"] == label
        # the worker really ran that mode (its own report of its settings)
        assert c["metrics"]["settings"]["compile"] == compiled
    gate = json.loads((tmp / "results" / "verify.json").read_text())
    rows = {r["framework"]: r for r in gate["rows"]}
    assert set(rows) == set(want) and all(r["passed"] for r in rows.values()), rows
    page = (tmp / "report" / "index.html").read_text()
    assert '<span class="badge">out of the box</span>' in page
    assert '<span class="badge">at its best</span>' in page
    # "at its best" compares the mode of tensorflow that trained faster in this very run (on a
    # tiny CPU model either may win: the promise is that the measured faster mode is the one
    # compared, named with its settings)
    sps = {x["cell_id"].split("-mlp")[0]: x["train_samples_per_s"]["median"] for x in
           json.loads((tmp / "results" / "results.json").read_text())["summaries"]}
    faster = "tensorflow-xla" if sps["tensorflow-xla"] > sps["tensorflow"] else "tensorflow"
    slower = ({"tensorflow", "tensorflow-xla"} - {faster}).pop()
    best = page.split('<span class="badge">at its best</span>', 1)[1].split("</div>", 1)[0]
    mode = "best" if faster == "tensorflow-xla" else "default"
    assert f"{faster} = tensorflow {mode}:" in best, (faster, sps, best)
    assert f"{slower} = tensorflow" not in best, (slower, best)


def test_compare_says_when_a_cell_ran_in_another_mode(tmp_path):
    base, new = tmp_path / "base", tmp_path / "new"
    write_store(base, [_variant("fast", "pytorch", "best", {"compile": True})], run_doc())
    write_store(new, [_variant("fast", "pytorch", "custom", {"compile": "max-autotune"})],
                run_doc())
    from mlbench.analysis.compare import compare
    text = compare(base, new).render_text()
    assert "mode changed: fast-mlp-cpu-bs32-fp32 ran best (compile=true)" in text
    assert "custom (compile=max-autotune) in NEW" in text
    assert "mode changed" not in compare(base, base).render_text()


def test_comparison_table_names_the_mode_of_a_variant(tmp_path):
    _planted(tmp_path)
    from mlbench.report import build_report
    page = build_report(tmp_path, tmp_path / "report").read_text()
    # the comparison rows wait in their <template> (the table pages them in)
    table = page.split('<template id="cmp-rows">')[1].split("</template>")[0]
    assert "pytorch-compile <span class=\"badge\" title=\"compile=true\">best mode</span>" in table
