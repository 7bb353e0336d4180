"""Host and device facts: the machine a run measured (sysinfo) and NVIDIA GPUs through NVML (gpu,
gpu_sampling)."""
