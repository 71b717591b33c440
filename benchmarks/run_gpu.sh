#!/usr/bin/env bash
# GPU benchmarks for one device call; JSON files and a log go to $OUT. Sections, in the order given:
#   critic    critic training: bf16 peak, paper/fast protocols for P = 1, 12, 108, the faithful JAX
#             baseline and the PyTorch reference loop, 1 vs all GPUs, estimate_batch end to end
#   capture   capture throughput: ie_jax vs HF transformers, 7 real shapes x {bf16, fp32}
#   hf        the HF transformers half of capture alone
#   variants  per-step time of paper-critic speed variants (scatter-free permutation, bf16 activations)
#   accuracy  the MI accuracy table (benchmarks/mi_accuracy.py), two halves of the families in parallel
#             processes (one per GPU where there are two, else one after the other), merged into mi_accuracy_gpu.{json,md}
#   e2e       `ie-jax measure` end to end (benchmarks/sweep_e2e.py): random GPT-2 shapes, N = 20,000, fast protocol
#             and noise estimator, plus one chunk through the package at 97b21cf when $E2E_BASELINE holds it
#             (mkdir -p B && git archive 97b21cf ie_jax | tar -x -C B); E2E_ARGS adds arguments (--runs, --run-timeout-s)
# e.g. `bash benchmarks/run_gpu.sh capture variants`. CRITIC_ARGS / CAPTURE_ARGS / VARIANT_ARGS add
# arguments (tiny sizes to try it on CPU: see benchmarks/README.md).
set -u
OUT=${OUT:-/tmp/ie_jax_gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
log=$OUT/log_$(IFS=_; echo "$*").txt
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
  python3 -c 'import jax, flax, optax, torch, transformers, ie_jax.models, ie_jax.mi
print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__, "torch", torch.__version__,
      "transformers", transformers.__version__, "devices", jax.devices())'
  for what in "$@"; do
    case $what in
      critic)
        # The PyTorch reference first, in its own process: JAX below takes most of the GPU memory.
        timeout 90 python3 benchmarks/sweep_gpu.py --torch-reference --out "$OUT/reference_torch_gpu.json" ${CRITIC_ARGS:-}
        XLA_PYTHON_CLIENT_MEM_FRACTION=0.94 timeout 400 python3 benchmarks/sweep_gpu.py --out "$OUT/critic_gpu.json" \
          --budget-s 360 --paper-steps 30 --api-problems 4 ${CRITIC_ARGS:-}
        ;;
      capture)
        XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 260 python3 benchmarks/capture_gpu.py --framework jax \
          --out "$OUT/capture_jax_gpu.json" --budget-s 230 ${CAPTURE_ARGS:-}
        timeout 170 python3 benchmarks/capture_gpu.py --framework hf --out "$OUT/capture_hf_gpu.json" --budget-s 145 \
          ${CAPTURE_ARGS:-}
        ;;
      hf)
        timeout 330 python3 benchmarks/capture_gpu.py --framework hf --out "$OUT/capture_hf_gpu.json" --budget-s 270 \
          ${CAPTURE_ARGS:-}
        ;;
      variants)
        XLA_PYTHON_CLIENT_MEM_FRACTION=0.94 timeout 200 python3 benchmarks/sweep_gpu.py --out "$OUT/variants_gpu.json" \
          --only-variants --paper-steps 20 --budget-s 180 ${VARIANT_ARGS:---variants 12}
        ;;
      accuracy)
        n_gpus=$(nvidia-smi -L 2>/dev/null | wc -l); n_gpus=$(( n_gpus > 0 ? n_gpus : 1 ))
        halves=(gaussian,rotated,sparse cubic,spiral,mixture)
        # Two processes sharing one GPU ran 3-5x slower each (H200), so they only run in parallel on 2+ GPUs.
        for i in 0 1; do
          CUDA_VISIBLE_DEVICES=$(( i % n_gpus )) XLA_PYTHON_CLIENT_MEM_FRACTION=0.45 timeout 570 python3 \
            benchmarks/mi_accuracy.py --families "${halves[$i]}" --tag "gpu_part$i" ${ACCURACY_ARGS:-} \
            > "$OUT/log_mi_accuracy_part$i.txt" 2>&1 &
          (( n_gpus > 1 )) || wait
        done
        wait
        python3 benchmarks/mi_accuracy.py --merge gpu_part0,gpu_part1 --tag gpu | tail -n 2
        cp benchmarks/results/mi_accuracy_gpu*.* "$OUT/"
        ;;
      e2e)
        baseline=()
        [ -d "${E2E_BASELINE:-}/ie_jax" ] && baseline=(--baseline "$E2E_BASELINE")
        timeout 590 python3 benchmarks/sweep_e2e.py --out "$OUT/sweep_e2e_gpu.json" "${baseline[@]}" ${E2E_ARGS:-}
        ;;
      *) echo "unknown section $what: use critic, capture, hf, variants, accuracy or e2e"; exit 2 ;;
    esac
  done
  date -u
} 2>&1 | tee "$log"
