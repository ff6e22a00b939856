"""Downpour's standardised softmax regression against scikit-learn's on the same split.

For each tabular example job (examples/{wine,breast_cancer,iris}.toml), this trains the job
with `downpour train` (with and without --standardize), writes the job's split with
`downpour evaluate --split-out`, fits scikit-learn's StandardScaler + LogisticRegression
(default C = 1.0, lbfgs) on exactly those training rows and scores it on those test rows.
The issue's goal: with --standardize, Downpour is within 2 points of scikit-learn.

Usage (from the repository root, after `cargo build --release`):
    /work/venv-torch/bin/python tests/reference/compare_tabular_sklearn.py [path/to/downpour]

The numbers it printed on this repository are in the README's data section and, as
reference values, in tests/integration/data.rs.
"""

import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[2]
BINARY = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target" / "release" / "downpour")
JOBS = {"wine": "label", "breast_cancer": "diagnosis", "iris": "species"}


def read_csv(path, label):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    names = [n for n in rows[0] if n != label]
    x = [[float(r[n]) for n in names] for r in rows]
    y = [r[label] for r in rows]
    return x, y


def downpour_accuracy(job, extra, run_dir):
    subprocess.run(
        [BINARY, "train", "--job", str(job), "--quiet", "--run-dir", str(run_dir), *extra],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    report = json.loads((run_dir / "report.json").read_text())
    return report["final"]["test_accuracy"]


def main():
    print("| dataset | samples × features | test samples | downpour raw | downpour --standardize | scikit-learn standardised | gap (points) |")
    print("|---|---|---|---|---|---|---|")
    for name, label in JOBS.items():
        job = ROOT / "examples" / f"{name}.toml"
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            # The example jobs standardise; the raw run switches it off in a copy.
            raw_job = tmp / f"{name}-raw.toml"
            raw_job.write_text(
                job.read_text()
                .replace("standardize = true", "standardize = false")
                .replace('path = "data/', f'path = "{ROOT}/examples/data/')
            )
            raw = downpour_accuracy(raw_job, [], tmp / "raw")
            scaled = downpour_accuracy(job, [], tmp / "scaled")
            split_file = tmp / "split.json"
            subprocess.run(
                [BINARY, "evaluate", "--job", str(tmp / "scaled" / "job.toml"),
                 "--weights", str(tmp / "scaled" / "weights.safetensors"),
                 "--split-out", str(split_file)],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            split = json.loads(split_file.read_text())
        x, y = read_csv(ROOT / "examples" / "data" / f"{name}.csv", label)
        train, test = split["train"], split["test"]
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=10_000))
        model.fit([x[i] for i in train], [y[i] for i in train])
        reference = model.score([x[i] for i in test], [y[i] for i in test])
        print(
            f"| {name} | {len(x)} × {len(x[0])} | {len(test)} | {raw:.4f} | {scaled:.4f} "
            f"| {reference:.4f} | {100 * (reference - scaled):+.2f} |"
        )


if __name__ == "__main__":
    main()
