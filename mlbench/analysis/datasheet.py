"""The datasheet's dense peak FLOP/s of known NVIDIA GPUs, for `mfu_datasheet`.

Owns the table (PEAK_TFLOPS, matched on the NVML device name) and the one lookup, `peak`: a
GPU name, a cell's precision and the cell's REQUEST tf32 flag (not a label parsed from a
framework's settings: JAX calls it `tf32_requested`, torch and TF `tf32`, and a missed match
gave fp32 cells with TF32 the plain fp32 peak, an MFU 7.4x too high on an H100). A MIG slice
has no datasheet peak: the whole GPU's would overstate it by the slice's share of the SMs.
Must not import any ML framework.
"""
from __future__ import annotations

import re

# Dense (no 2:4 structured sparsity) peak TFLOP/s. NVIDIA prints tensor-core figures with
# sparsity: they are halved here. fp32 = plain FP32 (CUDA cores); tf32 = TF32 tensor cores
# (fp32 cells run with tf32 enabled); fp16/bf16 with FP32 accumulate. Sources:
# - H100 SXM / PCIe / NVL: "NVIDIA H100 Tensor Core GPU" datasheet; GH200: its GPU is an H100
#   (SXM figures: "NVIDIA GH200 Grace Hopper Superchip" datasheet);
# - H200 SXM and H200 NVL: "NVIDIA H200 Tensor Core GPU" datasheet (NVL: FP32 60, TF32 835,
#   BF16/FP16 1,671 TFLOPS sparse);
# - B200 (HGX, 1,000 W): NVIDIA's GB200 NVL72 / HGX B200 specification table, per GPU: FP32 75
#   TFLOPS, TF32 2.2 PFLOPS and FP16/BF16 4.5 PFLOPS sparse
#   (https://www.nvidia.com/en-us/data-center/gb200-nvl72/; also glennklockwood.com/garden/
#   processors/B200);
# - A100 (40/80 GB, SXM and PCIe: same peaks), L40S, L4, A10 product datasheets; RTX 4090:
#   the Ada whitepaper (FP16/BF16 with FP32 accumulate);
# - V100: "NVIDIA Tesla V100 GPU Accelerator" datasheet: SXM2 15.7 FP32 / 125 tensor, PCIe 14 /
#   112, V100S PCIe 16.4 / 130; T4 datasheet.
# Matched in order on the lower-cased NVML name's words: the first entry whose words all occur
# wins, so a variant comes before its family ("h200 nvl" before "h200").
PEAK_TFLOPS: list[tuple[tuple[str, ...], dict[str, float]]] = [
    (("h200", "nvl"), {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5}),
    (("h200",), {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),
    (("gh200",), {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),
    (("h100", "nvl"), {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5}),
    (("h100", "pcie"), {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0}),
    (("h100",), {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),
    (("b200",), {"fp32": 75.0, "tf32": 1100.0, "bf16": 2250.0, "fp16": 2250.0}),
    (("a100",), {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0}),
    (("l40s",), {"fp32": 91.6, "tf32": 183.0, "bf16": 362.05, "fp16": 362.05}),
    (("l4",), {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0}),
    (("a10",), {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0}),
    (("rtx", "4090"), {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2}),
    (("v100s",), {"fp32": 16.4, "fp16": 130.0}),
    (("v100", "pcie"), {"fp32": 14.0, "fp16": 112.0}),
    (("v100",), {"fp32": 15.7, "fp16": 125.0}),
    (("t4",), {"fp32": 8.1, "fp16": 65.0}),
]


def peak(device_name: str | None, precision: str | None,
         tf32: bool = False) -> tuple[float | None, str | None]:
    """(dense peak FLOP/s, None) for a GPU by its NVML name (e.g. "NVIDIA H100 80GB HBM3") at a
    cell's precision; an fp32 cell whose request asked for TF32 gets the TF32 peak. (None, why)
    for a MIG slice, an unknown device or a precision the sheet has no figure for. Words match
    whole tokens ("a10" is not "a100", "h200" is not "gh200")."""
    if not isinstance(device_name, str) or not isinstance(precision, str):
        return None, "no device name or precision"
    tokens = set(re.split(r"[^a-z0-9]+", device_name.lower()))
    if "mig" in tokens:
        return None, (f"{device_name} is a MIG slice: the datasheet's peak is the whole GPU's "
                      "(no per-slice figure)")
    prec = precision.lower()
    if prec == "fp32" and tf32 is True:
        prec = "tf32"
    for words, peaks in PEAK_TFLOPS:
        if all(w in tokens for w in words):
            v = peaks.get(prec)
            return (v * 1e12, None) if v else (None, f"no {prec} figure for {device_name}")
    return None, f"{device_name} is not in mlbench's datasheet table"


def datasheet_flops(device_name: str | None, precision: str | None,
                    tf32: bool = False) -> float | None:
    """peak()'s figure alone."""
    return peak(device_name, precision, tf32)[0]
