"""The page's points of issue 21 (item 6) that are not verdict texts: one labelling scheme for
models, no empty option braces, both CPU memory figures drawn side by side and named, the legend
clear of plotly's toolbar, log-axis ticks with their units, a y-axis title on every panel, no
curve against batch size from one batch size, the Verdict table not boxed, one name for the
"Across frameworks" section, units in the break-even table's cells, a warnings column there."""
from __future__ import annotations

import json
import random
import re

import fakestore as fs
import pytest

from mlbench.results import aggregate
from mlbench.report import build_report
from mlbench.report.figures import build_figures


def _cells(attempts):
    return aggregate.cells_frame(aggregate.attempts_frame(attempts))


def _attempts(batches=(32, 64), models=("mlp", "cnn"), seed=1):
    rng = random.Random(seed)
    out = []
    for model in models:
        for fw, k in (("pytorch", 1.0), ("jax", 0.8)):
            for bs in batches:
                st = [0.002 * k * bs / 32 * rng.lognormvariate(0, 0.1) for _ in range(30)]
                a = fs.attempt(fw, model, batch_size=bs, step_times=st,
                               latencies=[x / 4 for x in st[:12]],
                               host_rss=int(7e8 * k) + bs * 2**20)
                a["metrics"]["memory"]["host_baseline_rss_bytes"] = int(6e8 * k)
                a["model_options"] = {"preset": "small" if model == "mlp" else "tiny"}
                a["model_label"] = "mlp" if model == "mlp" else "cnn.tiny"
                out.append(a)
    return out


def test_one_labelling_scheme_and_no_empty_braces():
    labels = set(_cells(_attempts())["model_label"].to_list())
    assert labels == {"mlp.small", "cnn.tiny"}
    row = aggregate.flatten(0, {"model": "user", "model_label": "tabular", "model_options": {}})
    assert row["model_label"] == "tabular"
    # the gate still knows the cells by the config's label
    assert set(_cells(_attempts())["gate_label"].to_list()) == {"mlp", "cnn.tiny"}


def test_figures_layout_points():
    figs = {f.id: f for f in build_figures(_cells(_attempts()))}
    mem = figs["memory"].spec
    names = {t["name"] for t in mem["data"]}
    assert {"pytorch working memory", "pytorch peak RSS (whole process)"} <= names
    for t in mem["data"]:  # both drawn solid, side by side: hatching means the gate only
        assert not t["marker"]["pattern"]["shape"], t["name"]
    work = [t for t in mem["data"] if t["name"] == "jax working memory"][0]
    peak = [t for t in mem["data"] if t["name"] == "jax peak RSS (whole process)"][0]
    assert work["offsetgroup"] != peak["offsetgroup"] and work["xaxis"] == peak["xaxis"]
    assert all(p > w for p, w in zip(peak["y"], work["y"]))
    for f in figs.values():
        lay = f.spec["layout"]
        # the legend right of the panels, starting below the top margin (where the toolbar is)
        assert lay["legend"]["orientation"] == "v" and lay["legend"]["x"] > 1, f.id
        ys = [k for k in lay if k.startswith("yaxis")]
        if f.id != "params":
            assert len(ys) == 2, f.id  # two panels: mlp.small, cnn.tiny
            for k in ys:
                assert lay[k]["title"]["text"], (f.id, k)
                if lay[k].get("type") == "log":
                    assert lay[k]["tickformat"], (f.id, k)
    assert figs["throughput"].spec["layout"]["yaxis"]["type"] == "log"
    assert figs["throughput"].spec["data"][0]["type"] == "scatter"


def test_one_batch_size_draws_no_curve_and_says_why():
    figs = {f.id: f for f in build_figures(_cells(_attempts(batches=(64,))))}
    thr = figs["throughput"]
    assert all(t["type"] == "bar" for t in thr.spec["data"])
    assert "batch size 64" in thr.title and "against batch size" not in thr.title
    assert "one batch size" in thr.caption
    assert all(t["type"] == "bar" for t in figs["latency"].spec["data"])


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("points")
    atts = _attempts(models=("mlp",))
    for a in list(atts):
        if a["framework"] == "pytorch":
            b = {**a, "framework": "pytorch-compile", "base_framework": "pytorch",
                 "mode": "compile", "cell_id": a["cell_id"].replace("pytorch", "pytorch-compile"),
                 "first_step": None}
            b["metrics"] = {**a["metrics"], "train": {**a["metrics"]["train"],
                                                      "first_step_s": 3.0}}
            atts.append(b)
    run = fs.write_store(tmp / "r", atts)
    return build_report(run, tmp / "o").read_text()


def test_page_points(page):
    verdict = page.split('<section id="verdict">', 1)[1].split("</section>", 1)[0]
    # grows with its rows (no inner vertical scroll hiding the last row); scrolls sideways only
    assert '<div class="scroll grow"><table id="verdict-table">' in verdict
    assert re.search(r"\.scroll\.grow \{ max-height:none; \}", page)
    nav = page.split("<nav>", 1)[1].split("</nav>", 1)[0]
    heading = page.split('<section id="comparison">', 1)[1].split("</h2>", 1)[0]
    name = re.search(r'href="#comparison">([^<]+)<', nav).group(1)
    assert heading.endswith(name) and name == "Across frameworks"
    modes = page.split('id="modes-table"', 1)[1].split("</table>", 1)[0]
    head = modes.split("</thead>", 1)[0]
    assert "step ms" not in head and "<th>warnings</th>" in head and "<th>gate</th>" in head
    # the modes section's figure: its log axis labels whole numbers too
    spec = json.loads(re.search(r'id="fig-compile-cost" class="figure"></div>\s*<script>'
                                r'\(function\(\)\{var s=(.*?);if\(s\.panels\)', page).group(1))
    assert spec["layout"]["xaxis"]["type"] == "log" and spec["layout"]["xaxis"]["tickformat"]
    rows = modes.split("<tbody>", 1)[1]
    # step times of ~2-4 ms and a 3 s compile: each cell carries its own unit
    assert re.search(r'class="n">\d+(\.\d+)? ms<', rows) and re.search(r'class="n">\d(\.\d+)? s<',
                                                                       rows)
