#!/usr/bin/env bash
# The README's accelerator measurements in one command, for a GPU machine with jaxmac's
# dependencies importable (run from the repository root):
#
#   OUT=results/device bash experiments/device_checks.sh latency   # bench_latency, 3 shapes
#   OUT=results/device bash experiments/device_checks.sh train     # bench_train --device
#
# Each benchmark runs under its own time limit (LATENCY_S, TRAIN_S seconds) and rewrites its JSON
# after every row, so a run stopped at the limit keeps what it measured. Prints the device, the
# versions and the XLA flags first: the figures are only meaningful with them.
set -u
[ $# -gt 0 ] || { echo "usage: $0 latency|train [latency|train]" >&2; exit 2; }
for part in "$@"; do  # every part is checked before any device time is spent
    case $part in latency|train) ;; *) echo "unknown part '$part': latency or train" >&2; exit 2 ;; esac
done
OUT=${OUT:-results/device}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, \
'optax', optax.__version__, jax.devices()); import os; print('XLA_FLAGS', os.environ.get('XLA_FLAGS'))"
for part in "$@"; do
    start=$(date +%s)
    case $part in
        latency)
            timeout "${LATENCY_S:-240}" python3 experiments/bench_latency.py \
                --models tiny flan-t5-small flan-t5-base --out "$OUT/bench_latency_gpu.json" ;;
        train)
            timeout "${TRAIN_S:-480}" python3 experiments/bench_train.py --device \
                --out "$OUT/bench_train_gpu.json" ;;
    esac
    echo "$part: exit $?, $(($(date +%s) - start)) s wall"
done
