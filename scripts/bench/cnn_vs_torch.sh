#!/bin/sh
# The CNN training step side by side: Downpour (criterion bench) then PyTorch, both on one
# thread, batch 64, the cnn preset on random 1x28x28 images. Run on a quiet machine.
#   scripts/bench/cnn_vs_torch.sh [PYTHON]    (default: $DOWNPOUR_TORCH_PYTHON, else python3)
set -eu
python=${1:-${DOWNPOUR_TORCH_PYTHON:-python3}}
cargo bench -p downpour-worker --bench cnn_step -- --warm-up-time 3 --measurement-time 10 \
    | grep -E '^cnn/|time:|thrpt:'
"$python" "$(dirname "$0")/torch_cnn.py"
