#!/usr/bin/env python3
"""Reference values from torch.optim for server/tests/optimizers_match_pytorch.rs.

Regenerate (from the repository root) with one command:

    python3 server/tests/reference/make_optimizer_reference.py

It needs `torch` (e.g. `python3 -m venv /tmp/torchenv &&
/tmp/torchenv/bin/pip install torch`, then run the script with that
interpreter) and rewrites `optimizer_reference.json` beside this file.

What it records, all in float32 on the CPU:
- `optimizer_cases`: for every optimizer setting, the parameter after each of
  STEPS steps of the single-tensor (for-loop, `foreach=False`) implementation
  on fixed gradients, some steps scaled x100 and some x0.01, plus the
  optimizer's per-parameter state (torch's names) halfway and at the end.
  Each case's `config` is the job file's `[optimizer]` section; every key but
  `name` is passed to the torch.optim constructor unchanged, so the test also
  checks that our hyperparameter names are torch.optim's.
- `schedule_cases`: the learning rate used at each optimizer step by
  torch.optim.lr_scheduler schedulers equivalent to our `[schedule]` configs.
- `clip_cases`: `torch.nn.utils.clip_grad_norm_` on several tensors at once.

Hyperparameters are passed as written (Python floats, as our f64 config fields
hold them); only `lr` is f32 on our side, a difference of at most one rounding
of the step size.
"""

import json
import pathlib

import torch

OUT = pathlib.Path(__file__).with_name("optimizer_reference.json")
SIZE = 16
STEPS = 30
MID = 15
SCALED_UP = range(8, 12)  # steps whose gradient is multiplied by 100
SCALED_DOWN = range(18, 22)  # steps whose gradient is multiplied by 0.01
ZERO_GRAD_STEPS = range(0, 5)  # element 3 gets an exact zero gradient here

OPTIMIZERS = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adagrad": torch.optim.Adagrad,
    "adadelta": torch.optim.Adadelta,
    "rmsprop": torch.optim.RMSprop,
}

# (id, job-file config). Defaults are left out on purpose where a case is
# about the defaults.
OPTIMIZER_CASES = [
    ("sgd_defaults", {"name": "sgd"}),
    ("sgd_plain", {"name": "sgd", "lr": 0.1}),
    ("sgd_momentum", {"name": "sgd", "lr": 0.05, "momentum": 0.9}),
    ("sgd_dampening", {"name": "sgd", "lr": 0.05, "momentum": 0.9, "dampening": 0.5}),
    ("sgd_nesterov", {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("sgd_weight_decay", {"name": "sgd", "lr": 0.1, "weight_decay": 0.1}),
    (
        "sgd_nesterov_weight_decay",
        {"name": "sgd", "lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.05},
    ),
    ("sgd_maximize", {"name": "sgd", "lr": 0.1, "momentum": 0.5, "maximize": True}),
    ("adagrad_defaults", {"name": "adagrad"}),
    ("adagrad_lr", {"name": "adagrad", "lr": 0.5}),
    ("adagrad_lr_decay", {"name": "adagrad", "lr": 0.5, "lr_decay": 0.05}),
    ("adagrad_weight_decay", {"name": "adagrad", "lr": 0.5, "weight_decay": 0.1}),
    (
        "adagrad_initial_accumulator_value",
        {"name": "adagrad", "lr": 0.5, "initial_accumulator_value": 0.5, "eps": 1e-6},
    ),
    ("adagrad_maximize", {"name": "adagrad", "lr": 0.5, "maximize": True}),
    ("adadelta_defaults", {"name": "adadelta"}),
    ("adadelta_weight_decay", {"name": "adadelta", "weight_decay": 0.1}),
    ("adadelta_rho_eps", {"name": "adadelta", "lr": 0.5, "rho": 0.5, "eps": 1e-3}),
    ("adadelta_maximize", {"name": "adadelta", "maximize": True}),
    ("rmsprop_defaults", {"name": "rmsprop"}),
    ("rmsprop_momentum", {"name": "rmsprop", "momentum": 0.9}),
    ("rmsprop_centered", {"name": "rmsprop", "centered": True}),
    (
        "rmsprop_centered_momentum",
        {"name": "rmsprop", "alpha": 0.9, "centered": True, "momentum": 0.5},
    ),
    ("rmsprop_weight_decay", {"name": "rmsprop", "weight_decay": 0.1}),
    ("rmsprop_maximize", {"name": "rmsprop", "momentum": 0.5, "maximize": True}),
    ("adam_defaults", {"name": "adam"}),
    ("adam_lr", {"name": "adam", "lr": 0.05}),
    ("adam_weight_decay", {"name": "adam", "lr": 0.05, "weight_decay": 0.1}),
    ("adam_amsgrad", {"name": "adam", "lr": 0.05, "amsgrad": True}),
    ("adam_betas_eps", {"name": "adam", "lr": 0.05, "betas": [0.5, 0.9], "eps": 1e-3}),
    ("adam_maximize", {"name": "adam", "lr": 0.05, "maximize": True}),
    ("adamw_defaults", {"name": "adamw"}),
    ("adamw_weight_decay", {"name": "adamw", "lr": 0.05, "weight_decay": 0.1}),
    (
        "adamw_amsgrad",
        {"name": "adamw", "lr": 0.05, "weight_decay": 0.1, "amsgrad": True},
    ),
    ("adamw_maximize", {"name": "adamw", "lr": 0.05, "maximize": True}),
]

BASE_LR = 0.1

# (id, our [schedule] config, steps, torch scheduler factory). Cosine is
# compared up to t_max only: past it torch's lr climbs back up the cosine,
# ours stays at eta_min (a deliberate difference, see docs/optimizers.md).
SCHEDULE_CASES = [
    ("constant", {"kind": "constant"}, 10, lambda o: torch.optim.lr_scheduler.ConstantLR(o, factor=1.0)),
    (
        "step",
        {"kind": "step", "step_size": 3, "gamma": 0.5},
        20,
        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5),
    ),
    (
        "exponential",
        {"kind": "exponential", "gamma": 0.9},
        20,
        lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.9),
    ),
    (
        "cosine",
        {"kind": "cosine", "t_max": 10, "eta_min": 0.001},
        11,
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10, eta_min=0.001),
    ),
]
WARMUP_CASES = [("constant", 4, 10), ("step", 4, 20), ("exponential", 3, 20), ("cosine", 5, 16)]


def gradients():
    gen = torch.Generator().manual_seed(20240603)
    grads = []
    for step in range(STEPS):
        g = torch.randn(SIZE, generator=gen, dtype=torch.float32)
        if step in SCALED_UP:
            g = g * 100.0
        if step in SCALED_DOWN:
            g = g * 0.01
        if step in ZERO_GRAD_STEPS:
            g[3] = 0.0
        grads.append(g)
    return grads


def state_of(optimizer, param):
    """torch's per-parameter state: tensors by name, and the step count."""
    buffers, step = {}, None
    for name, value in optimizer.state[param].items():
        if name == "step":
            step = int(value.item())
        elif isinstance(value, torch.Tensor):
            buffers[name] = value.tolist()
    return {"step": step, "buffers": buffers}


def run_optimizer(case_id, config, initial, grads):
    kwargs = {k: v for k, v in config.items() if k != "name"}
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    param = torch.nn.Parameter(initial.clone())
    optimizer = OPTIMIZERS[config["name"]]([param], foreach=False, **kwargs)
    params, mid_state = [], None
    for step, g in enumerate(grads):
        param.grad = g.clone()
        optimizer.step()
        params.append(param.detach().clone().tolist())
        if step + 1 == MID:
            mid_state = state_of(optimizer, param)
    return {
        "id": case_id,
        "config": config,
        "params": params,
        "mid_step": MID,
        "mid_state": mid_state,
        "final_state": state_of(optimizer, param),
    }


def record_lrs(make_scheduler, steps):
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=BASE_LR)
    scheduler = make_scheduler(optimizer)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def schedule_cases():
    cases = []
    by_kind = {case_id: (config, factory) for case_id, config, _, factory in SCHEDULE_CASES}
    for case_id, config, steps, factory in SCHEDULE_CASES:
        cases.append({"id": case_id, "base_lr": BASE_LR, "schedule": config,
                      "lrs": record_lrs(factory, steps)})
    for kind, warmup, steps in WARMUP_CASES:
        config, factory = by_kind[kind]

        def warmed(o, warmup=warmup, factory=factory):
            # Our warm-up: step k < W uses lr * (k + 1) / W, then the decay
            # starts from its own step 0 (SequentialLR restarts it there).
            linear = torch.optim.lr_scheduler.LinearLR(
                o, start_factor=1.0 / warmup, end_factor=1.0, total_iters=warmup - 1)
            return torch.optim.lr_scheduler.SequentialLR(
                o, schedulers=[linear, factory(o)], milestones=[warmup])

        cases.append({"id": f"warmup_{kind}", "base_lr": BASE_LR,
                      "schedule": {**config, "warmup_steps": warmup},
                      "lrs": record_lrs(warmed, steps)})
    return cases


def clip_cases():
    gen = torch.Generator().manual_seed(7)
    shapes = [(4, 3), (5,), (2, 2, 2)]
    cases = []
    for max_norm, scale in [(1.0, 1.0), (100.0, 1.0), (0.5, 30.0), (2.0, 1e-3)]:
        tensors = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
        grads = [torch.randn(s, generator=gen) * scale for s in shapes]
        for t, g in zip(tensors, grads):
            t.grad = g.clone()
        total = torch.nn.utils.clip_grad_norm_(tensors, max_norm, foreach=False)
        cases.append({
            "max_norm": max_norm,
            "grads": [g.flatten().tolist() for g in grads],
            "total_norm": total.item(),
            "clipped": [t.grad.flatten().tolist() for t in tensors],
        })
    return cases


def main():
    initial = torch.randn(SIZE, generator=torch.Generator().manual_seed(1), dtype=torch.float32)
    grads = gradients()
    data = {
        "generator": f"server/tests/reference/make_optimizer_reference.py, torch {torch.__version__}",
        "initial_param": initial.tolist(),
        "gradients": [g.tolist() for g in grads],
        "optimizer_cases": [run_optimizer(i, c, initial, grads) for i, c in OPTIMIZER_CASES],
        "schedule_cases": schedule_cases(),
        "clip_cases": clip_cases(),
    }
    OUT.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({len(data['optimizer_cases'])} optimizer cases, "
          f"{len(data['schedule_cases'])} schedule cases, {len(data['clip_cases'])} clip cases)")


if __name__ == "__main__":
    main()
