"""The report opened in a real headless Chromium with networking off.

Promises: no console errors or page exceptions, every figure rendered (a .js-plotly-plot with an
svg .main-svg inside per figure), planted XSS strings execute nothing, nothing is fetched, and a
screenshot is saved (reports/browser-test.png). Never skips: CI installs Debian's chromium;
without it the test fails with instructions.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import fakestore as fs
import pytest

from mlbench.report import build_report

pytestmark = pytest.mark.slow  # minutes: soak loops, a real Ray cluster or a real browser

XSS_SCRIPT = "<script>window.__pwned=1</script>"
XSS_ATTR = '"><img src=x onerror="window.__pwned=1">'
ROOT = Path(__file__).resolve().parent.parent

# Runs before the page's own scripts: records console errors and page exceptions.
PROBE_HEAD = """<script>window.__errors=[];
(function(){var e=console.error;console.error=function(){window.__errors.push(
Array.prototype.map.call(arguments,String).join(' '));e.apply(console,arguments);};
window.addEventListener('error',function(ev){window.__errors.push('error: '+(ev.message||
(ev.target&&ev.target.outerHTML)||ev));},true);
window.addEventListener('unhandledrejection',function(ev){window.__errors.push('rejection: '+
ev.reason);});})();</script>"""
# Runs after load: writes what the test needs into the DOM that --dump-dom prints.
PROBE_TAIL = """<script>window.addEventListener('load',function(){setTimeout(function(){
var plots=document.querySelectorAll('.js-plotly-plot'),drawn=0;
plots.forEach(function(p){if(p.querySelector('svg.main-svg'))drawn++;});
var res={figures:document.querySelectorAll('div.figure').length,plots:plots.length,drawn:drawn,
pwned:typeof window.__pwned,errors:window.__errors,
resources:performance.getEntriesByType('resource').map(function(r){return r.name;})};
var pre=document.createElement('pre');pre.id='__probe';pre.textContent=JSON.stringify(res);
document.body.appendChild(pre);},500);});</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("Chromium is required for the report browser test and was not found. Install it "
                "with: apt-get update && apt-get install -y chromium chromium-driver")


def run_chromium(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
               "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
               "--disable-dev-shm-usage", "--virtual-time-budget=10000", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def hostile_store(tmp: Path) -> Path:
    attempts = []
    for fw, speed in (("pytorch", 1.0), ("jax", 0.8)):
        for bs in (16, 32):
            for r in range(2):
                attempts.append(fs.attempt(
                    fw, model=f"mlp{XSS_SCRIPT}", device=f"cpu{XSS_ATTR}", batch_size=bs,
                    repeat=r, step_times=[0.01 * speed * bs / 16 * (1 + 0.01 * r)] * 20,
                    latencies=[0.002 * speed] * 20,
                    cid=f"{fw}-mlp{XSS_SCRIPT}-bs{bs}{XSS_ATTR}"))
    attempts.append(fs.attempt("tensorflow", status="failed", reason=f"boom {XSS_SCRIPT}",
                               stderr_tail=f"Traceback\n{XSS_ATTR}\n{XSS_SCRIPT}",
                               cid=f"tf{XSS_ATTR}"))
    run = fs.run_doc(config_note=XSS_SCRIPT)
    run["host"]["cpu_model"] = XSS_ATTR
    return fs.write_store(tmp / "run", attempts, run)


def probe(index: Path, tmp: Path) -> dict:
    html = index.read_text(encoding="utf-8")
    html = html.replace("<head>", "<head>" + PROBE_HEAD, 1).replace(
        "</body>", PROBE_TAIL + "</body>", 1)
    probe_page = tmp / "probe.html"
    probe_page.write_text(html, encoding="utf-8")
    proc = run_chromium(["--dump-dom", probe_page.as_uri()])
    m = re.search(r'<pre id="__probe">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"probe did not report; chromium stderr:\n{proc.stderr[-3000:]}"
    return json.loads(m.group(1).replace("&lt;", "<").replace("&gt;", ">")
                      .replace("&quot;", '"').replace("&amp;", "&"))


def test_report_in_real_browser(tmp_path):
    index = build_report(hostile_store(tmp_path), tmp_path / "report")
    res = probe(index, tmp_path)
    assert res["pwned"] == "undefined", "a planted string executed"
    assert res["errors"] == [], res["errors"]
    assert res["figures"] >= 5
    assert res["plots"] == res["figures"] and res["drawn"] == res["figures"], res
    assert all(r.startswith(("file:", "data:")) for r in res["resources"]), res["resources"]

    shot = ROOT / "reports" / "browser-test.png"
    shot.parent.mkdir(exist_ok=True)
    proc = run_chromium([f"--screenshot={shot}", "--window-size=1400,3000",
                         "--hide-scrollbars", index.as_uri()])
    assert shot.exists() and shot.stat().st_size > 10_000, proc.stderr[-2000:]


def test_failures_only_report_in_browser(tmp_path):
    attempts = [fs.attempt("pytorch", status="oom", reason="CUDA out of memory"),
                fs.attempt("jax", status="skipped", reason="jax is not installed")]
    index = build_report(fs.write_store(tmp_path / "run", attempts), tmp_path / "report")
    res = probe(index, tmp_path)
    assert res["errors"] == [] and res["pwned"] == "undefined"
    assert res["figures"] == 0 and res["plots"] == 0
    if os.environ.get("MLBENCH_KEEP_SCREENSHOTS"):
        run_chromium([f"--screenshot={ROOT / 'reports' / 'browser-failures.png'}",
                      "--window-size=1400,1600", index.as_uri()])


def test_big_sweep_draws_the_selected_panel_of_every_figure(tmp_path):
    # over a dozen model x device x precision panels: beyond the grid limit, one panel per figure is
    # drawn (the selector's first) and every figure shows it without errors
    index = build_report(fs.write_store(tmp_path / "run", fs.sweep(200, steps=10, latencies=5)),
                         tmp_path / "report")
    html = index.read_text(encoding="utf-8")
    assert 'id="panel-select"' in html and html.count("<option>") > 6
    res = probe(index, tmp_path)
    assert res["errors"] == [] and res["figures"] >= 5
    assert res["plots"] == res["figures"] and res["drawn"] == res["figures"], res


def test_long_tables_are_paged_and_the_filter_searches_every_row(tmp_path):
    attempts = fs.sweep(300, steps=5, latencies=5)
    index = build_report(fs.write_store(tmp_path / "run", attempts), tmp_path / "report")
    last = sorted({a["cell_id"] for a in attempts})[-1]
    script = ("<script>window.addEventListener('load',function(){var b=document.getElementById("
              "'summary-table').tBodies[0],n0=b.rows.length,i=document.querySelector("
              "'input[data-table=\"summary-table\"]');i.value=" + json.dumps(last) + ";"
              "i.dispatchEvent(new Event('input'));var p=document.createElement('pre');"
              "p.id='__paging';p.textContent=JSON.stringify({first:n0,filtered:b.rows.length,"
              "text:b.textContent.indexOf(" + json.dumps(last) + ")>=0});"
              "document.body.appendChild(p);});</script>")
    page = tmp_path / "paging.html"
    page.write_text(index.read_text(encoding="utf-8").replace("</body>", script + "</body>", 1),
                    encoding="utf-8")
    proc = run_chromium(["--dump-dom", page.as_uri()])
    m = re.search(r'<pre id="__paging">(.*?)</pre>', proc.stdout, re.S)
    assert m, proc.stderr[-2000:]
    res = json.loads(m.group(1))
    assert res == {"first": 100, "filtered": 1, "text": True}, res


def test_tables_fit_or_scroll_whole_at_1400_px(tmp_path):
    index = build_report(fs.write_store(tmp_path / "run", fs.sweep(120, steps=10, latencies=5,
                                                                   repeats=2)),
                         tmp_path / "report")
    script = ("<script>window.addEventListener('load',function(){var o={page:document."
              "documentElement.scrollWidth,view:window.innerWidth,t:{}};document.querySelectorAll("
              "'.scroll').forEach(function(s){var t=s.querySelector('table');o.t[t.id]={client:"
              "s.clientWidth,scroll:s.scrollWidth,ovx:getComputedStyle(s).overflowX};});var p="
              "document.createElement('pre');p.id='__fit';p.textContent=JSON.stringify(o);"
              "document.body.appendChild(p);});</script>")
    page = tmp_path / "fit.html"
    page.write_text(index.read_text(encoding="utf-8").replace("</body>", script + "</body>", 1),
                    encoding="utf-8")
    proc = run_chromium(["--window-size=1400,1000", "--dump-dom", page.as_uri()])
    m = re.search(r'<pre id="__fit">(.*?)</pre>', proc.stdout, re.S)
    assert m, proc.stderr[-2000:]
    res = json.loads(m.group(1))
    assert res["page"] <= res["view"], res          # nothing sticks out of the page
    for tid in ("verdict-table", "cmp-table", "warnings-table"):
        t = res["t"][tid]
        assert t["scroll"] <= t["client"], (tid, t)   # fits: no column cut or hidden
    s = res["t"]["summary-table"]                   # too wide to fit: scrolls in its own box
    assert s["ovx"] == "auto" and s["scroll"] > s["client"]
