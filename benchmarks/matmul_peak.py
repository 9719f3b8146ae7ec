"""The machine's measured matmul peak (GFLOP/s) per dtype: the denominator of MFU.

Run from the repository root::

    .venv/bin/python -m benchmarks.matmul_peak [--seconds 2]

``torch.matmul`` of square matrices at a few sizes, with all cores, for about ``--seconds`` per
point; the peak of a dtype is its best point. On CPU, bf16 runs on AMX or AVX512-BF16 where the
CPU has them (otherwise it is no faster than fp32); on CUDA the GPU is measured.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

# 256 as well: on some CPUs (bf16 without AMX) small matmuls run faster than big ones, and the
# models of the smoke benchmarks are small, so a peak of big sizes alone could sit below what they reach.
SIZES = (256, 512, 1024, 2048)


def matmul_gflops(dtype_name: str, size: int, seconds: float, device: str = "cpu") -> float:
    """Sustained GFLOP/s of ``size``-cubed matmuls in ``dtype_name`` over about ``seconds``."""
    import torch

    dtype = getattr(torch, dtype_name)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    warm_until = time.perf_counter() + min(0.05, seconds / 2)
    while True:  # warm-up: kernel selection, first-touch of the memory, clocks up
        torch.matmul(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        if time.perf_counter() >= warm_until:
            break
    n = 0
    started = time.perf_counter()
    while True:
        torch.matmul(a, b)
        n += 1
        if device == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            break
    return 2 * size**3 * n / elapsed / 1e9


def measure_peaks(seconds: float = 2.0, sizes: tuple[int, ...] = SIZES) -> dict[str, Any]:
    """``{"device", "float32": {size: GFLOP/s, ..., "peak": best}, "bfloat16": {...}}``."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    result: dict[str, Any] = {"device": device, "threads": torch.get_num_threads()}
    for dtype_name in ("float32", "bfloat16"):
        points = {str(size): matmul_gflops(dtype_name, size, seconds, device) for size in sizes}
        result[dtype_name] = {**points, "peak": max(points.values())}
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    peaks = measure_peaks(args.seconds)
    print(json.dumps(peaks, indent=2))
    return peaks


if __name__ == "__main__":
    main()
