"""Does the same question asked twice get the same answer? Figures for issue 20.

Parts (all by default; `--parts a,b` picks):
  aa          A/A: `--pairs` pairs (default 5) of back-to-back runs of one small three-framework
              config (mlp, one batch size, 3 processes per cell), each pair compared with
              `mlbench compare`: flagged cells (regressed or improved) per pair; goal 0.
              Then every two of the runs (minutes apart): flagged rows and exits 1.
  agree       verdict agreement between every two of those runs: results.json `verdicts` when
              present, else the report's recommendations; goal: never opposite winners.
  power       a planted, known slowdown detected: the dummy worker's step time 10% slower
              (`--shift`) under lognormal noise (`--noise`) per sample and per process, over
              `--trials` pairs (detection rate; and the A/A false-flag rate of the same noise);
              and a compute-bound real cell (pytorch cnn) at `threads: 1` against `threads: 2`.
  contention  the run of `aa`'s config with one CPU hog per core beside it (goal: every cell
              marked `contended`), and the same run without (goal: none marked when the
              machine is otherwise quiet: the figure printed first says how busy it was).
  wait-policy PyTorch MLP training steps, OMP_WAIT_POLICY unset vs passive, without and with
              one CPU hog (median step time, ms): the measurement behind mlbench's default.
  sweep       the wall time of the quick sweep (`mlbench run`, the embedded default config).
  interval    simulated: how often one A/A comparison of N processes a side clears the 5% margin,
              with the percentile bootstrap alone and with the rule's interval (widened to
              Welch's t on the logs), for lognormal, 2x-uniform and bimodal processes (numpy).

    .venv/bin/python benchmarks/reproducibility.py                  # everything (~30 min)
    .venv/bin/python benchmarks/reproducibility.py --quick          # dummy-only parts, ~1 min
    .venv/bin/python benchmarks/reproducibility.py --parts aa,agree --pairs 2
    .venv/bin/python benchmarks/reproducibility.py --parts aa,agree --reuse --work DIR

Prints figures; not a timed test. Figures measured on a machine shared with other work are
noisy: the `busy` figure printed before each part is the other processes' CPU use right then.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlbench.run import contention  # noqa: E402

FRAMEWORKS = ["pytorch", "tensorflow", "jax"]
SMALL = {"frameworks": FRAMEWORKS, "models": [{"name": "mlp", "preset": "small"}],
         "devices": ["cpu"], "batch_sizes": [64], "precisions": ["fp32"], "epochs": 1,
         "train_samples": 4096, "eval_samples": 512, "repeats": 3, "verify": False,
         "ceiling": False, "timeout_s": 600}
FLAG = re.compile(r"\b(regressed|improved)\b", re.I)


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}


def busy_now(window: float = 1.0) -> float:
    """Other processes' CPU use right now, in cores (the benchmark itself excluded)."""
    b0, o0, t0 = contention.busy_cpu_s(), contention.own_cpu_s(), time.monotonic()
    time.sleep(window)
    return ((contention.busy_cpu_s() - b0) - (contention.own_cpu_s() - o0)) \
        / (time.monotonic() - t0)


def run(conf: dict, out: Path) -> float:
    """One `mlbench run` of `conf` into `out`; its wall time (s)."""
    path = out.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(conf))
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "mlbench.cli", "run", "-c", str(path), "-o",
                        str(out), "--no-report"], env=env(), capture_output=True, text=True)
    if p.returncode not in (0, 1):
        raise SystemExit(f"mlbench run failed ({p.returncode}): {p.stderr[-2000:]}")
    return time.monotonic() - t0


def flagged_rows(stdout: str) -> list[str]:
    """The rows of `mlbench compare`'s table flagged regressed or improved."""
    return [line for line in stdout.splitlines()
            if FLAG.search(line) and not re.match(r"(compare |\d+ regression|no regression)",
                                                  line.strip())]


def compare(base: Path, new: Path) -> tuple[int, set[str], str]:
    """`mlbench compare BASE NEW`: exit code, the cells flagged (regressed or improved)."""
    p = subprocess.run([sys.executable, "-m", "mlbench.cli", "compare", str(base), str(new)],
                       env=env(), capture_output=True, text=True)
    return p.returncode, {line.split()[0] for line in flagged_rows(p.stdout)}, p.stdout


def marked(out: Path) -> tuple[int, int]:
    """(cells marked contended, cells) of a run."""
    doc = json.loads((out / "results.json").read_text())
    warns = doc.get("cell_warnings") or {}
    return sum(any(w.startswith("contended:") for w in ws) for ws in warns.values()), len(warns)


def winners(out: Path, fresh: bool = False) -> dict[tuple, str | None]:
    """(model, device, question) -> winner (None: no winner) of a run: its results.json's
    `verdicts`, or (fresh, or none stored) decided again from its records by today's code."""
    doc = json.loads((out / "results.json").read_text())
    if isinstance(doc.get("verdicts"), list) and not fresh:
        return {(v.get("model"), v.get("device"), v.get("question")): v.get("winner")
                for v in doc["verdicts"]}
    import importlib

    from mlbench.results import frames
    recommend = importlib.import_module("mlbench.report.recommend")  # the module, not the name
    _, _, _, cells = frames.load_frames(out)
    return {(r.model, r.device, r.aspect): r.winner for r in recommend.recommend(cells)}


def part_aa(work: Path, pairs: int, conf: dict, reuse: bool = False) -> list[Path]:
    print(f"\n== A/A: {pairs} pair(s) of runs of {len(conf['frameworks'])} framework(s), "
          f"{conf['repeats']} process(es) per cell{' (kept runs)' if reuse else ''} ==")
    runs, total = [], 0
    for i in range(pairs):
        a, b = work / f"aa{i}a", work / f"aa{i}b"
        if reuse and not (a.is_dir() and b.is_dir()):
            break
        busy = 0.0 if reuse else busy_now()
        ta, tb = (0.0, 0.0) if reuse else (run(conf, a), run(conf, b))
        rc, flagged, _ = compare(a, b)
        total += len(flagged)
        ma, mb = marked(a), marked(b)
        print(f"pair {i}: other cores before {busy:.2f}; runs {ta:.0f} s + {tb:.0f} s; "
              f"compare exit {rc}, flagged cells {len(flagged)} {sorted(flagged)}; "
              f"contended cells {ma[0]}/{ma[1]} and {mb[0]}/{mb[1]}")
        runs += [a, b]
    print(f"A/A: {total} flagged cell(s) over {len(runs) // 2} pair(s) (goal 0)")
    part_all_pairs(runs)
    return runs


def part_all_pairs(runs: list[Path]) -> None:
    """Every two of the runs compared (minutes apart, not only back to back): a harder A/A,
    since a machine's state drifts over minutes for one framework and not the others."""
    rows = exits = n = 0
    for a, b in itertools.combinations(runs, 2):
        rc, _, out = compare(a, b)
        flagged = flagged_rows(out)
        n, rows, exits = n + 1, rows + len(flagged), exits + (rc == 1)
        for line in flagged:
            print(f"  {a.name} -> {b.name}: {' '.join(line.split()[:8])}")
    if n:
        print(f"every two runs: {n} comparisons, {rows} flagged row(s), {exits} exit 1")


def part_agree(runs: list[Path], fresh: bool = False) -> None:
    print(f"\n== verdict agreement over {len(runs)} run(s) ==")
    if len(runs) < 2:
        print("needs the runs of `aa`")
        return
    w = {r: winners(r, fresh) for r in runs}
    same = opposite = one_sided = none = 0
    for a, b in itertools.combinations(runs, 2):
        for key in w[a].keys() & w[b].keys():
            x, y = w[a][key], w[b][key]
            if x and y:
                same += x == y
                opposite += x != y
                if x != y:
                    print(f"  opposite: {key}: {a.name} {x} vs {b.name} {y}")
            elif x or y:
                one_sided += 1
            else:
                none += 1
    print(f"pairs of answers: same winner {same}, opposite winners {opposite} (goal 0), "
          f"a winner in one run only {one_sided}, no winner in both {none}")


def _dummy(options: dict, repeats: int = 5) -> dict:
    return {"frameworks": ["dummy"], "models": ["mlp"], "devices": ["cpu"],
            "batch_sizes": [1, 2, 4, 8], "repeats": repeats, "verify": False,
            "ceiling": False, "timeout_s": 60,
            "framework_settings": {"dummy": {"options": options}}}


def part_power(work: Path, trials: int, shift: float, noise: float, real: bool,
               reuse: bool = False) -> None:
    print(f"\n== power: a planted {shift:.0%} slowdown under lognormal noise {noise} "
          f"(per sample and per process), 4 cells x 5 processes, {trials} trial(s) ==")
    hits = aa_flags = cells = 0
    for t in range(trials):
        base, same, slow = work / f"p{t}base", work / f"p{t}same", work / f"p{t}slow"
        if not reuse:
            run(_dummy({"noise": noise}), base)
            run(_dummy({"noise": noise}), same)
            run(_dummy({"noise": noise, "shift": shift}), slow)
        _, flagged, text = compare(base, slow)
        regressed = {ln.split()[0] for ln in text.splitlines()
                     if "train samples/s" in ln and re.search(r"regressed", ln, re.I)}
        hits += len(regressed)
        cells += 4
        aa_flags += len(compare(base, same)[1])
    print(f"detected (train samples/s regressed): {hits}/{cells} cells; A/A flagged with the "
          f"same noise: {aa_flags}/{cells}")
    if not real:
        return
    print("\n== power on a real cell: pytorch cnn.tiny bs64, threads 2 (base) vs 1 (new) ==")
    conf = {**SMALL, "frameworks": ["pytorch"], "models": [{"name": "cnn", "preset": "tiny"}]}
    two, one = work / "threads2", work / "threads1"
    if not reuse:
        run({**conf, "threads": 2}, two)
        run({**conf, "threads": 1}, one)
    rc, flagged, text = compare(two, one)
    rows = [ln for ln in text.splitlines() if "train samples/s" in ln]
    print(f"compare exit {rc}; " + "; ".join(" ".join(r.split()) for r in rows))


def part_contention(work: Path, conf: dict) -> None:
    n = psutil.cpu_count() or 1
    print(f"\n== contention detector: {n} CPU hog(s) beside a run, and none ==")
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        run(conf, work / "hogs")
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    m = marked(work / "hogs")
    print(f"with hogs: {m[0]}/{m[1]} cells marked contended (goal: all)")
    busy = busy_now()
    run(conf, work / "quiet")
    m = marked(work / "quiet")
    print(f"without (other cores before: {busy:.2f}): {m[0]}/{m[1]} cells marked contended "
          "(goal: none on a quiet machine)")


WAIT_STEP = r"""
import statistics, sys, time, torch
torch.set_num_threads(int(sys.argv[2]))
torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                        torch.nn.ReLU(), torch.nn.Linear(256, 10))
opt = torch.optim.SGD(m.parameters(), lr=0.01)
x, y = torch.randn(32, 784), torch.randint(0, 10, (32,))
def step():
    opt.zero_grad(); torch.nn.functional.cross_entropy(m(x), y).backward(); opt.step()
for _ in range(20): step()
ts, end = [], time.perf_counter() + float(sys.argv[1])
while time.perf_counter() < end:
    t0 = time.perf_counter()
    for _ in range(20): step()
    ts.append((time.perf_counter() - t0) / 20)
print(statistics.median(ts) * 1e3)
"""


def part_wait_policy(rounds: int) -> None:
    threads = psutil.cpu_count(logical=False) or 1
    print(f"\n== OMP_WAIT_POLICY: pytorch MLP bs32 training step, {threads} thread(s), median "
          f"ms over 2 s, {rounds} round(s) ==")
    res: dict[tuple, list[float]] = {}
    for _ in range(rounds):
        for hog in (0, 1):
            for policy in ("unset", "passive"):
                e = {k: v for k, v in env().items() if k != "OMP_WAIT_POLICY"}
                e["OMP_NUM_THREADS"] = str(threads)
                if policy == "passive":
                    e["OMP_WAIT_POLICY"] = "passive"
                h = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if hog else None
                try:
                    p = subprocess.run([sys.executable, "-c", WAIT_STEP, "2", str(threads)],
                                       env=e, capture_output=True, text=True)
                finally:
                    if h:
                        h.kill()
                        h.wait()
                if p.returncode:
                    print(f"torch not usable here: {p.stderr[-300:]}")
                    return
                res.setdefault((hog, policy), []).append(float(p.stdout.split()[-1]))
    for (hog, policy), v in sorted(res.items()):
        print(f"hogs {hog}, OMP_WAIT_POLICY {policy:<7}: median {statistics.median(v):.2f} ms "
              f"(rounds: {', '.join(f'{x:.2f}' for x in v)})")


def part_sweep(work: Path) -> None:
    print("\n== the quick sweep (embedded default config) ==")
    busy = busy_now()
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "mlbench.cli", "run", "-o", str(work / "quick"),
                        "--no-report"], env=env(), capture_output=True, text=True)
    m = marked(work / "quick") if (work / "quick" / "results.json").exists() else (0, 0)
    print(f"wall {time.monotonic() - t0:.0f} s (exit {p.returncode}; other cores before "
          f"{busy:.2f}; {m[0]}/{m[1]} cells contended)")


def part_interval(comparisons: int = 400) -> None:
    import numpy as np

    from mlbench.analysis import stats
    print(f"\n== interval: A/A false flags at a 5% margin, {comparisons} comparisons a row ==")
    rng = np.random.default_rng(1)
    kinds = {"lognormal 0.2": lambda n: np.exp(rng.normal(0, 0.2, n)),
             "uniform 2x": lambda n: rng.uniform(21.6, 42.4, n),
             "bimodal": lambda n: np.where(rng.random(n) < 0.5, 22.0, 40.0)
             * np.exp(rng.normal(0, 0.03, n))}
    for name, draw in kinds.items():
        for n in (3, 5):
            boot = rule = 0
            for _ in range(comparisons):
                a, b = draw(n), draw(n)
                r = stats.ratio_ci(a, b)
                rule += r.lo > 1.05 or r.hi < 1 / 1.05
                g = stats._rng(None)
                x = (stats._boot_medians(a, g, stats.N_BOOT)
                     / stats._boot_medians(b, g, stats.N_BOOT))
                lo, hi = np.quantile(x, [0.025, 0.975])
                boot += lo > 1.05 or hi < 1 / 1.05
            print(f"{name:14} {n} a side: bootstrap alone {boot / comparisons:6.2%}, "
                  f"the rule's interval {rule / comparisons:6.2%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="aa,agree,power,contention,wait-policy,sweep,interval")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--shift", type=float, default=0.10)
    ap.add_argument("--noise", type=float, default=0.03)
    ap.add_argument("--quick", action="store_true",
                    help="dummy worker only: aa/agree/contention on the dummy, power without "
                         "the real cell, no wait-policy or sweep")
    ap.add_argument("--work", type=Path, default=None, help="keep the runs here")
    ap.add_argument("--reuse", action="store_true",
                    help="aa/agree/power: compare the runs kept in --work (aa0a, aa0b, p0base, "
                         "...) again instead of running them (e.g. after a change to the "
                         "decision rule)")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    conf = SMALL
    if args.quick:
        conf = {**_dummy({"noise": args.noise, "sleep_s": 0.3}, repeats=3),
                "batch_sizes": [1, 2]}
        parts -= {"wait-policy", "sweep"}
        args.pairs = min(args.pairs, 2)
    work = args.work or Path(tempfile.mkdtemp(prefix="mlbench-repro-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"runs in {work}; other cores in use now: {busy_now():.2f} of "
          f"{psutil.cpu_count()}")
    if args.reuse and not args.work:
        ap.error("--reuse needs --work DIR")
    runs = part_aa(work, args.pairs, conf, reuse=args.reuse) if "aa" in parts else []
    if "agree" in parts:
        part_agree(runs, fresh=args.reuse)
    if "power" in parts:
        part_power(work, args.trials, args.shift, args.noise, real=not args.quick,
                   reuse=args.reuse)
    if "contention" in parts:
        part_contention(work, conf)
    if "wait-policy" in parts:
        part_wait_policy(3)
    if "sweep" in parts:
        part_sweep(work)
    if "interval" in parts:
        part_interval()


if __name__ == "__main__":
    main()
