"""CPU-aware defaults of `ie-jax measure`, and the warning before a setting that takes far longer on a CPU."""

import json

import pytest

from ie_jax import plan
from ie_jax.cli import main

TINY = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 16, "intermediate_size": 32,
        "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 40, "max_position_embeddings": 8,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True}

cpu_only = pytest.mark.skipif(plan.accelerator() is not None, reason="the CPU defaults apply without an accelerator")


@pytest.mark.slow
@cpu_only
def test_measure_without_estimator_uses_the_cpu_defaults_and_says_so(tmp_path, capsys):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    out = tmp_path / "run"
    rc = main(["measure", "--model", f"random:{config}", "--data", "gaussian", "--seq-len", "2", "--set", "n_mc=16",
               "--layers", "0", "--out", str(out)])
    assert rc == 0
    said = capsys.readouterr().out
    assert "No accelerator" in said and "--samples 1000 by default" in said and "noise estimator" in said
    meta = json.loads((out / "result.json").read_text())["metadata"]
    assert meta["estimator"] == "noise" and meta["n_samples"] == plan.CPU_DEFAULTS["samples"] == 1000


@cpu_only
def test_the_neural_protocol_over_the_default_sweep_is_flagged_with_the_faster_choice():
    # The embedded default: 30 layers x (8 context positions + 8 tokens alone) = 480 MI problems, width 576.
    default_sweep = dict(n_problems=480, n_seeds=1, n_samples=2048, hidden_size=576)
    message = plan.slow_warning("neural", "fast", {}, **default_sweep)
    assert message is not None and "480 MI problems" in message and "--estimator noise" in message
    assert "hours" in message
    paper = plan.neural_cpu_seconds("paper", {}, **default_sweep)
    assert paper > plan.neural_cpu_seconds("fast", {}, **default_sweep)  # 10,000 full-batch steps
    # A few problems of a small model finish quickly: no warning; nor for the noise estimator.
    assert plan.slow_warning("neural", "fast", {}, n_problems=4, n_seeds=1, n_samples=256, hidden_size=16) is None
    assert plan.slow_warning("noise", "fast", {}, **default_sweep) is None
    # Fewer steps shorten the estimate in proportion.
    short = plan.neural_cpu_seconds("fast", {"steps": 150}, **default_sweep)
    assert short == pytest.approx(plan.neural_cpu_seconds("fast", {}, **default_sweep) / 10)
