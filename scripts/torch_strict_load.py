"""Loads Downpour's exported weights into the equivalent torch.nn.Sequential, strictly.

Usage: python scripts/torch_strict_load.py WEIGHTS CHECK
  WEIGHTS: safetensors written by Downpour for a `cnn` or `sequential` model.
  CHECK:   safetensors holding `inputs` [N, C, H, W] and `expected` [N, classes]:
           Downpour's class probabilities for those inputs.
  The layers come from the CHECK file's metadata key `layers` (a JSON list of the
  job file's layer texts, e.g. ["conv2d 32 3", "relu", ...]).

Builds the nn.Sequential those layers name, calls load_state_dict(..., strict=True),
and compares softmax(model(inputs)) with `expected`. Exit 0 and prints the largest
difference when they agree within 1e-4; exit 1 otherwise.
"""

import json
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn


def build(layers: list[str], example: torch.Tensor) -> nn.Sequential:
    """The torch module of each layer text, sized by running `example` through."""
    modules = []
    x = example
    for text in layers:
        words = text.split()
        keyword, args = words[0], words[1:]
        if keyword == "conv2d":
            options = dict(a.split("=") for a in args[2:])
            module = nn.Conv2d(x.shape[1], int(args[0]), int(args[1]),
                               stride=int(options.get("stride", 1)),
                               padding=int(options.get("padding", 0)))
        elif keyword == "dense":
            module = nn.Linear(x.shape[1], int(args[0]))
        elif keyword == "max_pool2d":
            module = nn.MaxPool2d(int(args[0]))
        elif keyword == "dropout":
            module = nn.Dropout(float(args[0]))
        else:
            module = {"flatten": nn.Flatten(), "relu": nn.ReLU(), "tanh": nn.Tanh(),
                      "sigmoid": nn.Sigmoid()}[keyword]
        modules.append(module)
        x = module(x)
    return nn.Sequential(*modules)


def main() -> int:
    weights_path, check_path = sys.argv[1], sys.argv[2]
    with safe_open(check_path, "pt") as f:
        layers = json.loads(f.metadata()["layers"])
    check = load_file(check_path)
    inputs, expected = check["inputs"], check["expected"]
    model = build(layers, inputs[:1]).eval()
    model.load_state_dict(load_file(weights_path), strict=True)
    with torch.no_grad():
        got = torch.softmax(model(inputs), dim=1)
    worst = (got - expected).abs().max().item()
    print(f"strict load of {len(model.state_dict())} tensors; largest difference {worst:.2e}")
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
