"""How fast Chromium draws the report of a big sweep, and how large the page is.

Builds the report of a synthetic 10,000-attempt store (tests/fakestore.sweep, 3 repeats per
cell), opens it in headless Chromium (networking off) and reads, from inside the page, the time
from navigation start to the load event, when every figure on the
page has been drawn (the figures are drawn by inline scripts while the page is parsed, so
the load event comes after them). Goals (issue 9): under 3 s and under 15 MB.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/report_draw.py [N]

Never imports an ML framework.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import fakestore  # noqa: E402

from mlbench.report import build_report  # noqa: E402

PROBE = """<script>window.addEventListener('load',function(){
var plots=document.querySelectorAll('.js-plotly-plot'),drawn=0;
plots.forEach(function(p){if(p.querySelector('svg.main-svg'))drawn++;});
var pre=document.createElement('pre');pre.id='__probe';pre.textContent=JSON.stringify(
{load_ms:performance.now(),plots:plots.length,drawn:drawn});
document.body.appendChild(pre);});</script>"""


def draw(index: Path, tmp: Path) -> dict:
    page = tmp / "probe.html"
    page.write_text(index.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>", 1),
                    encoding="utf-8")
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as profile:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", f"--user-data-dir={profile}",
             "--host-resolver-rules=MAP * ~NOTFOUND", "--disable-dev-shm-usage",
             "--window-size=1400,1000", "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=300)
        wall = time.perf_counter() - t0
    m = re.search(r'<pre id="__probe">(.*?)</pre>', proc.stdout, re.S)
    res = json.loads(m.group(1)) if m else {"error": proc.stderr[-500:]}
    return {**res, "chromium_wall_s": wall}


def main(n: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        run = fakestore.write_store(t / "run", fakestore.sweep(n, steps=100, latencies=50,
                                                               repeats=3))
        t0 = time.perf_counter()
        index = build_report(run, t / "report")
        build = time.perf_counter() - t0
        mb = index.stat().st_size / 1e6
        res = draw(index, t)
        print(f"{n} attempts: build_report {build:.2f} s, index.html {mb:.2f} MB, "
              "Chromium: parsed, drawn and loaded in "
              f"{res.get('load_ms', float('nan')) / 1e3:.2f} s "
              f"({res.get('drawn')} of "
              f"{res.get('plots')} plots), chromium process {res['chromium_wall_s']:.2f} s")
        ok = mb < 15 and res.get("load_ms", 1e9) < 3000
        print("goals met" if ok else "GOALS MISSED (< 3 s, < 15 MB)")
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000))
