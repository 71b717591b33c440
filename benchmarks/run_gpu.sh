#!/usr/bin/env bash
# One device call's worth of GPU benchmarks, JSON (and a log) written to $OUT.
#   bash benchmarks/run_gpu.sh critic    # critic training: peak, paper/fast protocols, baselines, 1 vs N GPUs
#   bash benchmarks/run_gpu.sh capture   # capture throughput: ie_jax vs HF transformers, 7 shapes x 2 dtypes
# Extra arguments go to every python command (tiny sizes to try it on CPU: see benchmarks/README.md).
set -u
what=${1:-critic}
shift || true
OUT=${OUT:-/tmp/ie_jax_gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
log=$OUT/log_$what.txt
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
  python3 -c 'import jax, flax, optax, torch, transformers, ie_jax.models, ie_jax.mi
print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__, "torch", torch.__version__,
      "transformers", transformers.__version__, "devices", jax.devices())'
  case $what in
    critic)
      # The PyTorch reference first, in its own process: JAX below takes most of the GPU memory.
      timeout 90 python3 benchmarks/sweep_gpu.py --torch-reference --out "$OUT/reference_torch_gpu.json" "$@"
      XLA_PYTHON_CLIENT_MEM_FRACTION=0.94 timeout 400 python3 benchmarks/sweep_gpu.py --out "$OUT/critic_gpu.json" \
        --budget-s 360 --paper-steps 30 --api-problems 4 "$@"
      ;;
    capture)
      XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 300 python3 benchmarks/capture_gpu.py --framework jax \
        --out "$OUT/capture_jax_gpu.json" --budget-s 270 "$@"
      timeout 200 python3 benchmarks/capture_gpu.py --framework hf --out "$OUT/capture_hf_gpu.json" --budget-s 170 "$@"
      ;;
    *) echo "usage: run_gpu.sh critic|capture [args]"; exit 2 ;;
  esac
  date -u
} 2>&1 | tee "$log"
