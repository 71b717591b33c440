"""The ie-jax command on a tiny random model: measure writes JSON and CSV, report writes PNGs and HTML."""

import csv
import json

import pytest

from ie_jax.cli import main

TINY = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 16, "intermediate_size": 32,
        "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 40, "max_position_embeddings": 8,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True}


@pytest.fixture()
def tiny(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY))
    return f"random:{path}"


@pytest.mark.slow
def test_measure_then_report(tiny, tmp_path, capsys):
    out = tmp_path / "runs" / "gauss"
    rc = main(["measure", "--model", tiny, "--data", "gaussian", "--samples", "40", "--seq-len", "3",
               "--estimator", "noise", "--sigma", "0.3,1", "--set", "n_mc=32", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "Layers measured per setting: 0.3:" in printed and "per layer: " in printed and "result.json" in printed
    # before estimating: the number of MI problems and chunks; then one progress line per chunk with an ETA
    assert "12 MI problems in 1 chunk of 12 (noise sigma=0.3, noise sigma=1); 0 already done" in printed
    assert "chunk 1/1: 12/12 problems" in printed and "ETA 0 s" in printed
    assert "seconds: capture" in printed and "compile" in printed and "total" in printed
    result = json.loads((out / "result.json").read_text())
    assert result["settings"] == ["noise sigma=0.3", "noise sigma=1"]
    assert result["metadata"]["data"]["variance"] == 0.81 and result["metadata"]["n_samples"] == 40
    rows = list(csv.DictReader((out / "result.csv").open()))
    assert {r["quantity"] for r in rows} >= {"ie", "mi_macro", "mi_micro", "token_curve", "ie_sum_over_layers"}
    assert len([r for r in rows if r["quantity"] == "ie"]) == 2 * 2  # 2 sigmas x 2 layers

    assert main(["report", str(tmp_path / "runs")]) == 0
    assert "report.html" in capsys.readouterr().out
    for name in ("ie_per_layer", "mi_macro_vs_micro", "layer_token_heatmap", "ie_sigma_heatmap"):
        png = (out / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 5000
    page = (tmp_path / "runs" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and "How to read the figures" in page
    assert "When IE is a number" in page and "Reported setting" in page
    assert "<h2>gauss</h2>" in page and "noise sigma=1" in page


def test_models_lists_architectures_and_shapes(capsys):
    assert main(["models"]) == 0
    printed = capsys.readouterr().out
    assert "llama" in printed and "gpt2" in printed and "smollm2-135m" in printed and "default" in printed


def test_errors_are_reported_plainly(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["measure", "--model", tiny, "--data", "wiki:x", "--out", str(out)]) == 2
    assert "unknown data spec 'wiki:x'" in capsys.readouterr().err
    base = ["measure", "--model", tiny, "--data", "gaussian", "--samples", "20", "--seq-len", "2",
            "--estimator", "noise", "--set", "n_mc=16", "--out", str(out)]
    assert main(base + ["--sigma", "1", "--chunk-size", "3"]) == 0
    printed = capsys.readouterr().out
    assert "8 MI problems in 3 chunks of 3" in printed
    assert "chunk 1/3: 3/8 problems" in printed and "chunk 3/3: 8/8 problems" in printed
    lines = [l for l in printed.splitlines() if l.startswith("chunk ")]
    assert len(lines) == 3 and all("ETA" in l for l in lines)
    assert main(base + ["--sigma", "1", "--memory-budget", "1GiB"]) == 0  # the budget is no part of the identity
    capsys.readouterr()
    assert main(base + ["--sigma", "1", "--memory-budget", "lots"]) == 2
    assert "cannot read 'lots' as a memory size" in capsys.readouterr().err
    assert main(base + ["--sigma", "2"]) == 2
    assert "holds another run" in capsys.readouterr().err
    assert main(["measure", "--model", tiny, "--data", "gaussian", "--samples", "20", "--estimator", "neural",
                 "--out", str(tmp_path / "n")]) == 2
    assert "too few for fast protocol (selection)" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nothing-here")]) == 2
    assert main(["measure", "--model", "random:no-such-shape", "--out", str(tmp_path / "m")]) == 2
    with pytest.raises(SystemExit):
        main(["measure", "--model", tiny, "--sigma", "a,b", "--out", str(out)])
