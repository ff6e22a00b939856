"""PyTorch's side of the CNN step benchmark (Rust side: worker/benches/cnn_step.rs).

One training step of the `cnn` preset's torch equivalent on a batch of 64 random
1x28x28 images, on ONE thread: forward, cross-entropy, backward (what a Downpour
worker computes per step), and separately with an Adam step added.

Run: /work/venv-torch/bin/python scripts/bench/torch_cnn.py [--steps N]
Prints samples/s for each, the median over repeated timed runs.
"""

import argparse
import statistics
import time

import torch
from torch import nn


def cnn() -> nn.Sequential:
    """The `cnn` preset, as docs/models.md shows it."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(1600, 64), nn.ReLU(), nn.Linear(64, 10),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=50, help="steps per timed run")
    parser.add_argument("--runs", type=int, default=7, help="timed runs (median reported)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = cnn()
    x = torch.rand(64, 1, 28, 28)
    y = torch.randint(0, 10, (64,))
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def gradient_step() -> None:
        model.zero_grad(set_to_none=False)
        loss_fn(model(x), y).backward()

    def adam_step() -> None:
        gradient_step()
        optimizer.step()

    for name, step in [("forward+backward", gradient_step), ("forward+backward+adam", adam_step)]:
        for _ in range(10):
            step()  # warm-up
        rates = []
        for _ in range(args.runs):
            started = time.perf_counter()
            for _ in range(args.steps):
                step()
            rates.append(64 * args.steps / (time.perf_counter() - started))
        print(f"torch {torch.__version__} 1 thread, batch 64, {name}: "
              f"{statistics.median(rates):.0f} samples/s (runs {min(rates):.0f}..{max(rates):.0f})")


if __name__ == "__main__":
    main()
