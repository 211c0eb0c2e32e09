"""Which device a trainer config runs on, spelled once: the stages, the real-fake builder and
metrics.json all ask this module, so `accelerator: cuda` and `auto` mean the same everywhere."""
from __future__ import annotations

GPU_NAMES = ("gpu", "cuda")


def uses_gpu(accelerator) -> bool:
    """True when Lightning will train on a CUDA GPU: `gpu`/`cuda`, or `auto` with one present."""
    name = str(accelerator)
    if name in GPU_NAMES:
        return True
    if name == "auto":
        import torch
        return torch.cuda.is_available()
    return False


def torch_device(accelerator) -> str:
    """The torch device string for work done outside Lightning (generating real-fake endings)."""
    return "cuda" if uses_gpu(accelerator) else "cpu"


# --- precision: bf16 where the CPU computes it natively ---------------------------------------------
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # torch.cpu.get_capabilities() and /proc/cpuinfo spell them alike


def native_bf16() -> bool:
    """True when this CPU has bf16 arithmetic in hardware (AVX512-BF16 or AMX-BF16): there bf16
    autocast trains about 1.5x faster than fp32 (docs/performance.md: 1.43-1.58x). A CPU with plain AVX512 or less
    emulates bf16 and gains nothing (oneDNN's own bf16 check, torch.ops.mkldnn._is_mkldnn_bf16_supported,
    says yes on any AVX512 CPU, so it is not this question).

    On Linux the kernel's CPU flags answer it without importing torch: the config is resolved, and a
    bad one refused, before the heavy imports (tests/test_bad_inputs.py). They are the CPUID bits that
    torch.cpu.get_capabilities() reads, and tests/test_devices.py checks that the two agree."""
    flags = _linux_cpu_flags()
    if flags is None:
        import torch
        capabilities = torch.cpu.get_capabilities()
        return any(bool(capabilities.get(flag)) for flag in NATIVE_BF16_FLAGS)
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def _linux_cpu_flags() -> set[str] | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def cpu_precision() -> str:
    """`${cpu_precision:}` in conf/trainer/cpu.yaml: bf16 autocast where it is native, else fp32.
    A resolver, so that the composed config holds the precision actually used: config_hash, the
    intermediate key and metrics.json all see `bf16-mixed` or `32-true`, never a placeholder."""
    return "bf16-mixed" if native_bf16() else "32-true"


def register_resolvers() -> None:
    from omegaconf import OmegaConf
    if not OmegaConf.has_resolver("cpu_precision"):
        OmegaConf.register_new_resolver("cpu_precision", cpu_precision, use_cache=True)
