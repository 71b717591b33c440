"""Bad arguments, settings and data specs are refused before anything is written: one line, rc 2, no run.json."""

import json
import os

import jax.numpy as jnp
import pytest
from flax import nnx

import ie_jax
from ie_jax import validation
from ie_jax.cli import main
from ie_jax.ie.data import GaussianData
from ie_jax.models import random_model

TINY = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 16, "intermediate_size": 32,
        "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 40, "max_position_embeddings": 8,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True}


@pytest.fixture()
def tiny(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY))
    return f"random:{path}"


# (extra CLI arguments, words the one-line error must hold)
BAD = [
    (["--samples", "0"], ["--samples", ">= 1", "got 0"]),
    (["--samples", "-3"], ["--samples", "got -3"]),
    (["--estimator", "neural", "--set", "lr=fast"], ["lr", "finite number"]),
    (["--estimator", "neural", "--set", "steps=1.5"], ["steps", "whole number"]),
    (["--set", "nosuch=1"], ["unknown setting", "nosuch"]),
    (["--estimator", "neural", "--set", "bound=bogus"], ["unknown bound", "bogus"]),
    (["--estimator", "noise", "--set", "n_mc=x"], ["n_mc", "whole number"]),
    (["--estimator", "noise", "--set", "n_mc=1"], ["n_mc", ">= 2"]),
    (["--estimator", "noise", "--set", "seed=3"], ["unknown setting", "seed", "noise"]),
    (["--estimator", "gaussian", "--set", "ridge=-1"], ["ridge", ">= 0"]),
    (["--estimator", "exact_discrete", "--set", "rtol=nan"], ["rtol", "finite"]),
    (["--estimator", "noise", "--sigma", "nan"], ["--sigma", "positive finite"]),
    (["--estimator", "noise", "--sigma", "0,1"], ["--sigma", "positive finite"]),
    (["--estimator", "neural", "--sigma", "0.1"], ["sigma applies to estimator='noise' only", "--estimator noise"]),
    (["--chunk-size", "0"], ["--chunk-size", ">= 1"]),
    (["--data", "gaussian:nan"], ["gaussian:VARIANCE", "'nan'"]),
    (["--data", "gaussian:abc"], ["gaussian:VARIANCE", "'abc'"]),
    (["--data", "gaussian:-1"], ["gaussian:VARIANCE", "'-1'"]),
    (["--data", "icl:country", "--seq-len", "-4"], ["--seq-len", "got -4"]),
    (["--data", "icl:country", "--seq-len", "5"], ["2 tokens per shot", "even"]),
    (["--data", "icl:planets"], ["unknown ICL category", "planets"]),
    (["--data", "text:/no/such/file.txt"], ["text file not found", "/no/such/file.txt"]),
    (["--layers", "7"], ["--layers [7] out of range", "0..1"]),
    (["--estimator", "gaussian", "--set", "ridge=0"], ["20 samples are too few for gaussian", "at least 33"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("extra,words", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_arguments_refused_before_any_file(tiny, tmp_path, capsys, extra, words):
    out = tmp_path / "run"
    base = ["measure", "--model", tiny, "--data", "gaussian", "--samples", "20", "--seq-len", "2", "--out", str(out)]
    assert main(base + extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ie-jax measure: error: ") and "\n" not in err
    for word in words:
        assert word in err, (word, err)
    assert not (out / "run.json").exists() and not (out / "chunks").exists()


@pytest.mark.slow
def test_corrected_command_runs_in_the_same_directory(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["measure", "--model", tiny, "--data", "gaussian", "--samples", "20", "--seq-len", "2",
            "--estimator", "noise", "--set", "n_mc=16", "--out", str(out)]
    assert main(base + ["--sigma", "nan"]) == 2
    assert main(base + ["--sigma", "1", "--chunk-size", "0"]) == 2
    assert main(base + ["--sigma", "1"]) == 0  # nothing of the refused commands is in the way
    assert (out / "result.json").exists()


def test_samples_zero_is_refused_by_the_api_too(tmp_path):
    lm = random_model(TINY)
    with pytest.raises(ValueError, match="--samples must be a whole number >= 1, got 0"):
        ie_jax.measure(lm, "gaussian", n_samples=0, seq_len=2, estimator="gaussian", out=tmp_path / "r")
    assert not (tmp_path / "r" / "run.json").exists()


def test_nan_weights_refused_before_run_json(tmp_path):
    lm = random_model(TINY)
    validation.check_model(lm)  # finite: remembered, and checked again once a weight array is replaced
    params = nnx.state(lm.module, nnx.Param)
    leaf = next(p for p in jax_leaves(params) if p[...].ndim == 2)
    leaf[...] = leaf[...].at[0, 0].set(jnp.nan)
    nnx.update(lm.module, params)
    with pytest.raises(ValueError, match=r"NaN or inf weights in .*1 entries.*damaged"):
        ie_jax.measure(lm, "gaussian", n_samples=20, seq_len=2, estimator="gaussian", out=tmp_path / "r")
    assert not (tmp_path / "r" / "run.json").exists()


def jax_leaves(state):
    import jax

    return jax.tree_util.tree_leaves(state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def test_out_naming_a_file_or_unwritable_place(tiny, tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    base = ["measure", "--model", tiny, "--data", "gaussian", "--samples", "20", "--seq-len", "2",
            "--estimator", "gaussian"]
    assert main(base + ["--out", str(a_file)]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err
    assert main(base + ["--out", str(a_file / "run")]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err
    assert a_file.read_text() == "mine"

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    target = locked / "run"
    if os.access(locked, os.W_OK):  # root ignores permission bits: /sys refuses even root
        target = "/sys/ie-jax-readonly-test/run"
        if os.access("/sys", os.W_OK) and os.path.exists("/sys/ie-jax-readonly-test"):
            pytest.skip("no unwritable place to test")
    rc = main(base + ["--out", str(target)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "cannot be written" in err and "choose a directory you can write to" in err
    assert "\n" not in err


def test_settings_are_checked_against_each_estimator():
    validation.check_settings("neural", "paper", {"batch_size": 256, "standardize": "rank"})
    validation.check_settings("neural", "fast", {"batch_size": None, "hidden": (64, 64)})
    validation.check_settings("noise", "fast", {"n_mc": 64, "dtype": "float64"})
    with pytest.raises(ValueError, match="hidden is a tuple of layer widths"):
        validation.check_settings("neural", "fast", {"hidden": (0,)})
    with pytest.raises(ValueError, match="skip is True or False"):
        validation.check_settings("neural", "fast", {"skip": "yes"})
    with pytest.raises(ValueError, match="dtype='float16': use one of"):
        validation.check_settings("noise", "fast", {"dtype": "float16"})
    with pytest.raises(ValueError, match="unknown schedule"):
        validation.check_settings("neural", "fast", {"schedule": "linear"})


def test_states_too_large_for_memory_refused_before_run_json(tmp_path):
    lm = random_model(TINY)
    with pytest.raises(ValueError, match="the hidden states would take .* GiB"):
        # 2 layers x 8 positions x 16 wide x 2 x 4 bytes x 10^9 samples: beyond any machine's memory
        validation.check_capture(lm, GaussianData(n_samples=10**9, seq_len=8), None, "isolated", True)
