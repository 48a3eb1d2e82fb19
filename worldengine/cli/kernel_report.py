"""What `bench` prints about the machine's kernels: CPU model, its matrix ISA, and the kernel choices
the engine made by measurement (linears: `worldengine.quant.select`; attention: `worldengine.attn.choose`)."""
from __future__ import annotations

from pathlib import Path

# /proc/cpuinfo flag → the name bench prints, in order of what matters for int8/bf16 GEMMs.
ISA_FLAGS = {"amx_tile": "AMX", "amx_int8": "AMX-INT8", "amx_bf16": "AMX-BF16", "avx512_vnni": "AVX-512 VNNI",
             "avx512_bf16": "AVX-512 BF16", "avx512f": "AVX-512F", "avx_vnni": "AVX-VNNI", "avx2": "AVX2"}


def cpu_isa() -> list[str]:
    """The ISA extensions of `ISA_FLAGS` this CPU reports (Linux /proc/cpuinfo; [] elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return [name for flag, name in ISA_FLAGS.items() if flag in flags]


def kernel_report() -> str:
    """Lines: ISA, then each linear shape class's and attention ring kind's choice with its timings (ms)."""
    from worldengine.attn.choose import choices
    from worldengine.quant.select import verdicts

    lines = [f"[bench] ISA: {', '.join(cpu_isa()) or 'unknown'}"]
    for key, verdict in verdicts().items():
        if key.startswith("attention"):   # raw timings; the choice (with its margin) is listed below
            continue
        times = " ".join(f"{n} {t:.3g}" for n, t in verdict["times_ms"].items())
        lines.append(f"[bench] kernel {key}: {verdict['choice']} (ms: {times})")
    for key, result in choices().items():
        times = " ".join(f"{n} {t:.3g}" for n, t in result["times_ms"].items())
        lines.append(f"[bench] attention {key}: {result['choice']} (ms: {times})")
    return "\n".join(lines)
