#!/usr/bin/env python3
"""PyTorch's Adam apply rate, to compare with `cargo bench -p downpour-server --bench optimizers`.

Steps one float32 tensor of 10M parameters (the Rust bench's `10M/adam` case: the
parameter starts at 0.5, the gradient is ((i % 97) - 48.5) * 1e-3) with
`torch.optim.Adam` on ONE thread, both with `fused=True` (ATen's fused CPU kernel,
vectorized with run-time ISA dispatch) and with the default implementation (the
single-tensor loop on the CPU), and prints the median over several runs in G params/s,
with torch's version and the CPU capability ATen uses.

Run (from the repository root):

    /work/venv-torch/bin/python scripts/bench/torch_adam.py [--params N] [--runs R] [--steps S]
"""

import argparse
import statistics
import time

import torch


def adam_rate(params: int, fused: bool, runs: int, steps: int) -> list[float]:
    """Per-run rates in parameters per second; each run times `steps` steps after a warm-up."""
    param = torch.full((params,), 0.5, dtype=torch.float32, requires_grad=True)
    index = torch.arange(params, dtype=torch.int64)
    param.grad = ((index % 97).to(torch.float32) - 48.5) * 1e-3
    kwargs = {"fused": True} if fused else {}
    optimizer = torch.optim.Adam([param], lr=1e-3, **kwargs)
    for _ in range(3):
        optimizer.step()
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(steps):
            optimizer.step()
        elapsed = time.perf_counter() - start
        rates.append(params * steps / elapsed)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} thread, {args.params} params, "
          f"median of {args.runs} runs of {args.steps} steps")
    for fused in (True, False):
        rates = adam_rate(args.params, fused, args.runs, args.steps)
        label = "Adam(fused=True)" if fused else "Adam() default"
        print(f"{label:18s} median {statistics.median(rates) / 1e9:.3f} G params/s "
              f"(min {min(rates) / 1e9:.3f}, max {max(rates) / 1e9:.3f})")


if __name__ == "__main__":
    main()
