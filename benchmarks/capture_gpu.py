"""Capture throughput on GPU: ie_jax `capture` vs HF transformers PyTorch, random-init real shapes.

Run (on the device machine, one process per framework so neither holds the other's memory):
  python3 benchmarks/capture_gpu.py --framework jax --out $OUT/capture_jax_gpu.json
  python3 benchmarks/capture_gpu.py --framework hf  --out $OUT/capture_hf_gpu.json

Each model x dtype: a batch of `--batch` x `--tokens` random token ids; ie_jax: `capture(lm, ids)` returns
block_input and block_output [L, B, T, d] for every block; HF: the base model (no LM head) with
output_hidden_states=True under inference_mode (the hidden states are the same residual streams).
Timed after warm-up (and, for JAX, compilation), median of `--repeats`, synchronised.
tokens/s = B T / seconds. FLOPs = 2 x block parameters x tokens + attention (4 T d per token and layer);
bytes = parameters read once + the [L, B, T, d] states written (ie_jax writes two copies).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import re
import statistics
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from sweep_gpu import RESULTS, Budget, now, nvidia_smi, sig3, write  # noqa: E402

MODELS = "gpt2,gpt2-medium,gpt2-large,gpt2-xl,openllama-3b,gemma-2b,gemma-7b,qwen2.5-1.5b,gemma-2-2b"


def model_counts(name: str, batch: int, tokens: int) -> dict:
    """Block parameters, layers, width and the FLOPs of one capture of [batch, tokens] (the shape alone)."""
    from ie_jax.models import registry

    arch, hf = registry.NAMED_SHAPES[name]
    config = registry.get_architecture(arch).CONFIG_CLASS.from_hf(hf)
    d, layers = config.hidden_size, config.num_layers
    return {"arch": arch, "layers": layers, "hidden": d, "attention_flops_per_token": 4 * tokens * d * layers}


def block_params_jax(lm) -> int:
    """Parameters of the stacked blocks (leaves with the layer axis first): the per-token matmul work."""
    import jax
    from flax import nnx

    layers = lm.config.num_layers
    _, state = nnx.split(lm.module)
    return sum(int(x.size) for x in jax.tree.leaves(state) if x.ndim >= 2 and x.shape[0] == layers)


def run_jax(args, budget: Budget, results: dict):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from ie_jax.models import capture, random_model

    results["env"] = {"date_utc": now(), "framework": "ie_jax", "jax": jax.__version__,
                      "devices": [d.device_kind for d in jax.devices()], "nvidia_smi": nvidia_smi()}
    for name in args.models.split(","):
        for dtype_name in args.dtypes.split(","):
            key = f"{name}/{dtype_name}"
            if budget.left() < 40:
                results["models"][key] = {"skipped": "time budget"}
                continue
            try:
                start = time.perf_counter()
                lm = random_model(name, seed=0, dtype=getattr(jnp, dtype_name))
                jax.block_until_ready(jax.tree.leaves(lm.module))
                init_s = time.perf_counter() - start
                ids = np.random.default_rng(0).integers(0, lm.config.vocab_size, (args.batch, args.tokens))
                start = time.perf_counter()
                jax.block_until_ready(capture(lm, ids).block_output)
                first_s = time.perf_counter() - start
                secs = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    cap = capture(lm, ids)
                    jax.block_until_ready((cap.block_input, cap.block_output))
                    secs.append(time.perf_counter() - start)
                params = block_params_jax(lm)
                entry = record(name, dtype_name, args, secs, params, copies=2)
                entry.update({"init_s": init_s, "first_call_incl_compile_s": first_s,
                              "output_shape": list(cap.block_output.shape), "output_dtype": str(cap.block_output.dtype)})
                del cap, lm
            except Exception as err:  # noqa: BLE001 - one model failing must not lose the others
                entry = {"error": repr(err)[:2000], "traceback": traceback.format_exc()[-2000:]}
            results["models"][key] = entry
            gc.collect()
            jax.clear_caches()
            print_entry(key, entry)
            write(Path(args.out), results)


def run_hf(args, budget: Budget, results: dict):
    import torch
    import transformers
    from transformers import AutoConfig, AutoModel

    from ie_jax.models import registry

    dev = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: only to try the script out

    def sync():
        if dev == "cuda":
            torch.cuda.synchronize()

    results["env"] = {"date_utc": now(), "framework": "transformers", "torch": torch.__version__,
                      "transformers": transformers.__version__,
                      "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu",
                      "allow_tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "nvidia_smi": nvidia_smi()}
    for name in args.models.split(","):
        for dtype_name in args.dtypes.split(","):
            if budget.left() < 30:
                for attn in args.hf_attention.split(","):
                    results["models"][f"{name}/{dtype_name}/{attn}"] = {"skipped": "time budget"}
                continue
            arch, hf = registry.NAMED_SHAPES[name]
            init_errors = []
            try:
                config = AutoConfig.for_model(hf["model_type"], **{k: v for k, v in hf.items() if k != "model_type"})
                start = time.perf_counter()
                model, how = build_hf_model(config, getattr(torch, dtype_name), dev, init_errors)
                sync()
                init_s = time.perf_counter() - start
                params = sum(p.numel() for n, p in model.named_parameters() if re.match(r"(.*\.)?(h|layers)\.\d+\.", n))
                ids = torch.randint(0, config.vocab_size, (args.batch, args.tokens), device=dev,
                                    generator=torch.Generator(dev).manual_seed(0))
            except Exception as err:  # noqa: BLE001
                results["models"][f"{name}/{dtype_name}"] = {"error": repr(err)[:2000], "init_errors": init_errors,
                                                             "traceback": traceback.format_exc()[-3000:]}
                print(f"{name}/{dtype_name}: {err!r}"[:300], flush=True)
                write(Path(args.out), results)
                continue
            for attn in args.hf_attention.split(","):
                key = f"{name}/{dtype_name}/{attn}"
                try:
                    if hasattr(model, "set_attn_implementation"):
                        model.set_attn_implementation(attn)
                    else:  # older transformers read the choice from the config at call time
                        model.config._attn_implementation = attn

                    def forward():
                        with torch.inference_mode():
                            return model(ids, output_hidden_states=True).hidden_states

                    forward()
                    sync()
                    secs = []
                    for _ in range(args.repeats):
                        sync()
                        start = time.perf_counter()
                        states = forward()
                        sync()
                        secs.append(time.perf_counter() - start)
                    entry = record(name, dtype_name, args, secs, params, copies=1)
                    entry.update({"init_s": init_s, "init": how, "init_errors": init_errors, "attention": attn, "hidden_states": len(states),
                                  "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if dev == "cuda" else None})
                    del states
                except Exception as err:  # noqa: BLE001
                    entry = {"error": repr(err)[:2000], "traceback": traceback.format_exc()[-2000:]}
                results["models"][key] = entry
                print_entry(key, entry)
                write(Path(args.out), results)
            del model
            gc.collect()
            if dev == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()


def build_hf_model(config, dtype, dev: str, errors: list):
    """Random-init HF base model on `dev`: built there directly, else built on the CPU and moved.

    Ways that fail are listed in `errors` (with their traceback tail) and the next one is tried.
    """
    import torch
    from transformers import AutoModel

    def on_device():
        with torch.device(dev):
            return AutoModel.from_config(config, dtype=dtype)

    def on_cpu_then_move():
        return AutoModel.from_config(config, dtype=dtype).to(dev)

    def class_on_cpu_then_move():
        return AutoModel._model_mapping[type(config)](config).to(dtype=dtype, device=dev)

    for how, build in [("from_config under torch.device", on_device), ("from_config on cpu, moved", on_cpu_then_move),
                       ("model class on cpu, moved", class_on_cpu_then_move)]:
        try:
            return build().eval(), how
        except Exception as err:  # noqa: BLE001 - try the next way, keep why this one failed
            errors.append({"how": how, "error": repr(err)[:500], "traceback": traceback.format_exc()[-1500:]})
    raise RuntimeError(f"no way to build the model worked: {[e['error'] for e in errors]}")


def record(name: str, dtype_name: str, args, secs: list[float], block_params: int, copies: int) -> dict:
    counts = model_counts(name, args.batch, args.tokens)
    n_tokens = args.batch * args.tokens
    t = statistics.median(secs)
    item = 2 if dtype_name == "bfloat16" else 4
    flops = n_tokens * (2 * block_params + counts["attention_flops_per_token"])
    state_bytes = copies * counts["layers"] * n_tokens * counts["hidden"] * item
    return {**counts, "dtype": dtype_name, "batch": args.batch, "tokens": args.tokens, "block_params": block_params,
            "seconds_median": t, "seconds": secs, "tokens_per_s": n_tokens / t, "flops": flops,
            "tflops": flops / t / 1e12, "bytes_min": block_params * item + state_bytes,
            "gb_per_s": (block_params * item + state_bytes) / t / 1e9}


def print_entry(key: str, entry: dict):
    if "tokens_per_s" in entry:
        print(f"{key:<34}{entry['tokens_per_s'] / 1e3:10.1f} k tok/s {entry['tflops']:7.1f} TFLOP/s "
              f"{entry['seconds_median'] * 1e3:8.2f} ms", flush=True)
    else:
        print(f"{key:<34} {str(entry)[:300]}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", choices=("jax", "hf"), required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--dtypes", default="bfloat16,float32")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hf-attention", default="eager,sdpa", help="HF attention implementations to time")
    parser.add_argument("--budget-s", type=float, default=240.0)
    args = parser.parse_args()
    budget = Budget(args.budget_s)
    results = {"config": vars(args), "models": {}}
    (run_jax if args.framework == "jax" else run_hf)(args, budget, results)
    results["wall_s"] = args.budget_s - budget.left()
    write(Path(args.out), results)
    if math.isfinite(results["wall_s"]):
        print(f"wall {results['wall_s']:.0f} s")



def capture_table(jax_file: Path, hf_file: Path, peak_tflops: float) -> list[str]:
    """One row per shape and dtype: ie_jax and HF tokens/s, ie_jax TFLOP/s (% of the bf16 peak), their ratio."""
    jax_models = json.loads(jax_file.read_text())["models"]
    hf_models = json.loads(hf_file.read_text())["models"]
    lines = ["| shape | dtype | block params | ie_jax k tok/s | ie_jax TFLOP/s (% peak) | HF eager k tok/s | "
             "HF sdpa k tok/s | ie_jax / best HF | compile s |", "|---|---|---|---|---|---|---|---|---|"]
    for key, m in jax_models.items():
        shape, dtype = key.split("/")
        hf = {a: hf_models[f"{key}/{a}"]["tokens_per_s"] for a in ("eager", "sdpa")}
        bf16 = dtype == "bfloat16"
        tflops = f"{m['tflops']:.0f}" + (f" ({100 * m['tflops'] / peak_tflops:.0f}%)" if bf16 else "")
        ratio = f"{m['tokens_per_s'] / max(hf.values()):.2f}x" + ("" if bf16 else "*")
        lines.append(f"| {shape} | {'bf16' if bf16 else 'fp32'} | {m['block_params'] / 1e6:.0f} M | "
                     f"{sig3(m['tokens_per_s'] / 1e3)} | {tflops} | {sig3(hf['eager'] / 1e3)} | "
                     f"{sig3(hf['sdpa'] / 1e3)} | "
                     f"{ratio} | {m['first_call_incl_compile_s']:.1f} |")
    return lines


def tables(results: Path = RESULTS) -> dict[Path, str]:
    """results/capture_gpu.md from capture_{jax,hf}_gpu.json and capture_families_{jax,hf}_gpu.json (the bf16 peak
    from critic_gpu.json)."""
    peak = json.loads((results / "critic_gpu.json").read_text())["peak"]["bf16"]["tflops"]
    env = {n: json.loads((results / f"{n}.json").read_text())["env"] for n in
           ("capture_jax_gpu", "capture_hf_gpu", "capture_families_jax_gpu")}
    run = json.loads((results / "capture_jax_gpu.json").read_text())
    gb = [m["bytes_min"] / 1e9 for m in run["models"].values()]
    lines = [
        "**Capture throughput, ie_jax against HF transformers** (`capture_*gpu.json`)", "",
        f"Written by `benchmarks/capture_gpu.py` from those files. Batch {run['config']['batch']} x "
        f"{run['config']['tokens']} tokens, random init, every block's input and output; median of "
        f"{run['config']['repeats']} after warm-up (and compilation). {env['capture_jax_gpu']['devices'][0]}, jax "
        f"{env['capture_jax_gpu']['jax']}; UTC: ie_jax {env['capture_jax_gpu']['date_utc'][:16].replace('T', ' ')}, "
        f"HF {env['capture_hf_gpu']['date_utc'][:16].replace('T', ' ')}. Fewest bytes per call (weights + states): "
        f"{min(gb):.1f}-{max(gb):.1f} GB. % peak is of the bf16 peak measured in the critic run "
        f"(`critic_gpu.json`, another H200 of the same model): {peak:.0f} TFLOP/s.", ""]
    lines += capture_table(results / "capture_jax_gpu.json", results / "capture_hf_gpu.json", peak)
    when = env["capture_families_jax_gpu"]["date_utc"][:16].replace("T", " ")
    lines += ["", f"Two more families, bf16 only, UTC {when} (`capture_families_jax_gpu.json`, "
              "`capture_families_hf_gpu.json`):", ""]
    lines += capture_table(results / "capture_families_jax_gpu.json", results / "capture_families_hf_gpu.json", peak)
    lines += ["", "\\* not like for like: JAX's default runs fp32 matmuls as TF32, PyTorch's default "
              "(`allow_tf32 = False`) as strict fp32."]
    return {results / "capture_gpu.md": "\n".join(lines) + "\n"}


if __name__ == "__main__":
    main()
