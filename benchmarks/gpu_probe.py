"""The GPU smoke check's probe (benchmarks/gpu_check.sh): what the node is, and whether its
float32 arithmetic is what mlbench's fp32 cells claim, in one short process per framework.

Writes a JSON document (argv[1]) and prints it. Sections:
- nvml: driver, the CUDA version the driver supports, per GPU name, UUID, power limit, clocks
  (SM, memory, max SM), throttle reasons, persistence, ECC, MIG mode (mlbench.host.gpu);
- torch: version, CUDA, cuDNN; an fp32 matmul (1024^2) and a 3x3 conv against the same
  computation in float64 on the CPU, with TF32 off and on: the relative error of each;
- jax: version, devices; the fp32 matmul against float64 at 'highest' and 'tensorfloat32'.
`problems` lists what must fail the check: TF32-off error at TF32's level (> 1e-4: the fp32
cells would not be fp32), TF32-on error at fp32's level on a TF32-capable GPU (the TF32
setting did nothing), a framework that could not run.

    python benchmarks/gpu_probe.py OUT.json [--dry-run]   (--dry-run: the NVML section only)

Runs in the GPU venv (mlbench and the frameworks importable); frameworks are imported inside
subprocesses so one broken framework cannot hide the other's figures.
"""
from __future__ import annotations

import json
import subprocess
import sys

FP32_MAX_REL = 1e-4    # fp32 with TF32 off: ~1e-6 for a 1024-long dot; TF32 gives ~1e-3
TF32_MIN_REL = 1e-5    # with TF32 on (Ampere+), the error must show it was used

TORCH = r"""
import json, torch
out = {"version": torch.__version__, "cuda": torch.version.cuda,
       "cudnn": torch.backends.cudnn.version(), "device": torch.cuda.get_device_name(0),
       "capability": list(torch.cuda.get_device_capability(0))}
g = torch.Generator().manual_seed(0)
a = torch.randn(1024, 1024, generator=g, dtype=torch.float64)
b = torch.randn(1024, 1024, generator=g, dtype=torch.float64)
x = torch.randn(8, 32, 32, 32, generator=g, dtype=torch.float64)
w = torch.randn(64, 32, 3, 3, generator=g, dtype=torch.float64)
ref_mm, ref_conv = a @ b, torch.nn.functional.conv2d(x, w, padding=1)
def rel(got, ref):
    return float((got.double().cpu() - ref).abs().max() / ref.abs().max())
for tf32 in (False, True):
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = False
    mm = a.float().cuda() @ b.float().cuda()
    conv = torch.nn.functional.conv2d(x.float().cuda(), w.float().cuda(), padding=1)
    torch.cuda.synchronize()
    out[f"matmul_rel_err_tf32_{'on' if tf32 else 'off'}"] = rel(mm, ref_mm)
    out[f"conv_rel_err_tf32_{'on' if tf32 else 'off'}"] = rel(conv, ref_conv)
print(json.dumps(out))
"""

JAX = r"""
import json, jax, jax.numpy as jnp, numpy as np
rng = np.random.default_rng(0)
a, b = rng.standard_normal((1024, 1024)), rng.standard_normal((1024, 1024))
ref = a @ b
dev = jax.devices("gpu")[0]
out = {"version": jax.__version__, "device": str(dev.device_kind)}
A, B = jax.device_put(a.astype(np.float32), dev), jax.device_put(b.astype(np.float32), dev)
for prec, key in (("highest", "off"), ("tensorfloat32", "on")):
    got = np.asarray(jnp.matmul(A, B, precision=prec), dtype=np.float64)
    out[f"matmul_rel_err_tf32_{key}"] = float(np.abs(got - ref).max() / np.abs(ref).max())
print(json.dumps(out))
"""


def nvml_section() -> dict:
    from mlbench.host import gpu, gpu_sampling
    out: dict = {"nvml": gpu.describe(), **gpu_sampling.versions(), "gpus": []}
    for v in gpu.visible_devices():
        state = gpu_sampling.device_state(f"cuda:{v.index}") or {}
        out["gpus"].append({"index": v.index, "uuid": v.uuid, "mig": v.mig, **{
            k: state.get(k) for k in ("power_limit_w", "sm_clock_mhz", "memory_clock_mhz",
                                      "sm_clock_max_mhz", "throttle_reasons", "persistence_mode",
                                      "ecc_mode", "mig_mode", "temperature_c", "power_w")}})
    names = {g["uuid"]: g["name"] for g in gpu.list_gpus()}
    for g in out["gpus"]:
        g["name"] = names.get(g["uuid"])
    return out


def run_framework(code: str, env_extra: dict | None = None) -> dict:
    import os
    env = {**os.environ, **(env_extra or {})}
    try:
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=240, env=env)
    except subprocess.TimeoutExpired:
        return {"error": "timed out after 240 s"}
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def problems(doc: dict) -> list[str]:
    """What must fail the smoke check, from the probe's figures."""
    out = []
    for fw in ("torch", "jax"):
        r = doc.get(fw)
        if r is None:
            continue
        if "error" in r:
            out.append(f"{fw} could not run its probe: {r['error']}")
            continue
        cap = r.get("capability") or [8, 0]
        for op in ("matmul", "conv"):
            off, on = r.get(f"{op}_rel_err_tf32_off"), r.get(f"{op}_rel_err_tf32_on")
            if off is not None and off > FP32_MAX_REL:
                out.append(f"{fw} {op} with TF32 off is off by {off:.1e} relative (> "
                           f"{FP32_MAX_REL:g}): fp32 cells would not compute in fp32")
            if on is not None and cap[0] >= 8 and on < TF32_MIN_REL and op == "matmul":
                out.append(f"{fw} {op} with TF32 on is off by only {on:.1e}: the TF32 "
                           "setting did not take effect")
    return out


def main(argv: list[str]) -> int:
    path, dry = argv[0], "--dry-run" in argv[1:]
    doc: dict = {"nvml": nvml_section()}
    if not dry:
        doc["torch"] = run_framework(TORCH)
        doc["jax"] = run_framework(JAX, {"JAX_PLATFORMS": "cuda",
                                         "XLA_PYTHON_CLIENT_PREALLOCATE": "false"})
    doc["problems"] = problems(doc)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
