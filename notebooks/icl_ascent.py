# %% [markdown]
# # 1. ICL step-wise ascent of IE
#
# The paper (Chen et al., ACL 2025) reports that the token-wise IE curve E(t) on in-context-learning lists
# (" France, Spain, Italy, ...") rises at each new demonstration (entity + comma) and saturates around the
# 7th. Here `ie_jax.paper.analysis.icl_ascent` measures E(t) = I_context(t) - mean_{s<=t} I_micro(s) per layer on
# SmolLM2-135M-Instruct (fp32) for country, animal and colour lists, with the noise-regularised estimator
# (sigma = 1 centred std; finite and well defined, unlike the neural macro estimates, which sit at their
# caps: issue 5). Next to it: the counting ceiling of the context MI at t, the plug-in entropy of the distinct
# prefixes, because a deterministic network can carry at most that much about its input.
#
# `IE_NB_SCALE=small|large`; small writes to `IE_NB_OUT` (a temp dir by default), large to notebooks/figures
# and notebooks/results.

# %%
import json
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import ie_jax
from ie_jax.paper import analysis
from ie_jax.fileio import jsonable

NAME = "icl_ascent"
SCALE, FIG_DIR, RESULT_DIR = analysis.notebook_dirs(NAME)
CONFIG = {
    "small": dict(n_samples=96, shots=4, layers=(0, 1, 15, 29), n_mc=32, categories=("country", "colour")),
    "large": dict(n_samples=1024, shots=None, layers=None, n_mc=128, categories=("country", "animal", "colour")),
}[SCALE]
SIGMA = 1.0
t_start = time.perf_counter()

# %%
lm = ie_jax.load_model("default")
res = analysis.icl_ascent(lm, CONFIG["categories"], n_samples=CONFIG["n_samples"], shots=CONFIG["shots"],
                          sigma=SIGMA, layers=CONFIG["layers"], n_mc=CONFIG["n_mc"])
for cat, r in res.items():
    print(f"{cat}: {r['description']}; e.g. {r['examples'][0]!r}")
    print("  layer-mean E(t):", np.round(r["curve_layer_mean"], 2).tolist())
    print("  gain at entity tokens:", np.round(r["entity_gain"], 2).tolist())
    print("  gain at comma tokens:", np.round(r["comma_gain"], 2).tolist())
    print("  prefix entropy (ceiling):", np.round(r["prefix_entropy"], 2).tolist())

# %% [markdown]
# ## Figures: E(t) per layer (heatmap) and the layer-mean curve against the counting ceiling

# %%
cats = list(res)
fig, axes = plt.subplots(2, len(cats), figsize=(4.5 * len(cats), 7), squeeze=False)
for j, cat in enumerate(cats):
    r = res[cat]
    T = r["token_curve"].shape[1]
    im = axes[0, j].imshow(r["token_curve"], aspect="auto", origin="lower", cmap="viridis")
    axes[0, j].set(title=f"{cat}: E(t) per layer (nats)", xlabel="token position t", ylabel="block")
    axes[0, j].set_yticks(range(len(r["layers"])), [str(l) for l in r["layers"]], fontsize=6)
    fig.colorbar(im, ax=axes[0, j])
    ax = axes[1, j]
    ci = r["token_curve_ci"].mean(axis=0)
    ax.plot(range(T), r["curve_layer_mean"], "o-", label="E(t), mean over layers")
    ax.fill_between(range(T), ci[:, 0], ci[:, 1], alpha=0.3)
    ax.plot(range(T), r["prefix_entropy"], "k--", label="prefix entropy (counting ceiling)")
    for t in range(0, T, 2):
        ax.axvline(t, color="grey", lw=0.3)
    ax.set(xlabel="token position t (grey: entity tokens)", ylabel="nats", title=f"{cat}, sigma={SIGMA}")
    ax.legend(fontsize=7)
fig.tight_layout()
fig.savefig(FIG_DIR / f"{NAME}_curves.png", dpi=110)

# %% [markdown]
# ## Key numbers and what we found

# %%
def saturation_shot(gains, frac=0.1):
    """First shot (1-based) whose entity gain falls below frac of the largest gain; None if none does."""
    big = np.max(gains[1:]) if len(gains) > 1 else np.max(gains)
    low = [k + 1 for k in range(1, len(gains)) if gains[k] < frac * big]
    return low[0] if low else None


numbers = {"scale": SCALE, "config": CONFIG, "sigma": SIGMA, "units": "nats", "categories": {}}
for cat, r in res.items():
    numbers["categories"][cat] = {
        k: r[k] for k in ("layers", "token_curve", "token_curve_ci", "curve_layer_mean", "entity_gain", "comma_gain",
                          "prefix_entropy", "ie", "ie_ci", "mi_macro_ceiling", "macro_saturated", "shots",
                          "examples")}
    numbers["categories"][cat]["saturation_shot"] = saturation_shot(r["entity_gain"])
lines = []
for cat, r in res.items():
    eg, cg = r["entity_gain"], r["comma_gain"]
    sat = numbers["categories"][cat]["saturation_shot"]
    rises = int(np.sum(eg[1:] > 0))
    lines.append(
        f"{cat} ({r['shots']} shots, N = {CONFIG['n_samples']}): the layer-mean E(t) rises at {rises} of "
        f"{len(eg) - 1} later entity tokens (mean gain {eg[1:].mean():.2f} nats) and "
        f"{'falls' if cg[1:].mean() < 0 else 'rises'} at later commas (mean {cg[1:].mean():+.2f} nats); the curve ends at {r['curve_layer_mean'][-1]:.2f} nats against a prefix-entropy ceiling of "
        f"{r['prefix_entropy'][-1]:.2f}; entity gains fall below 10% of the largest "
        + (f"at shot {sat}." if sat else "at no shot measured (no saturation within the list)."))
ceiling_shot = {cat: next((k + 1 for k in range(r["shots"]) if r["prefix_entropy"][2 * k] >= 0.99 * np.log(
    CONFIG["n_samples"])), None) for cat, r in res.items()}
numbers["ceiling_shot"] = ceiling_shot
entity_steps = all(np.sum(r["entity_gain"][1:] > 0) > (len(r["entity_gain"]) - 1) / 2 for r in res.values())
found = (
    "What we found. " + " ".join(lines) + " "
    + ("E(t) steps up at entities in every category, as the paper reports, " if entity_steps else
       "Unlike the paper, E(t) does not step up at most later entities: after the first shots it rises at commas "
       "and falls at entities, a sawtooth, ")
    + "and the prefix entropy explains it: each new entity adds ln(remaining entities) nats of possible "
    "orderings, and a deterministic network that keeps the prefixes apart carries them all, up to the sample's "
    f"ln N = {np.log(CONFIG['n_samples']):.2f} nats, reached at shot "
    + ", ".join(f"{ceiling_shot[c]} ({c})" for c in res)
    + ". Once the context MI is at that ceiling, E(t) moves only with the running mean of the micro MI that it "
    "subtracts (about ln K nats at entity tokens, 0 at commas)"
    + (": the list is too short here to see it. " if entity_steps else
       ", so it drops at entities and recovers at commas. ")
    + "The ascent therefore tracks how much the context can distinguish within the sample, and where it "
    "saturates depends on N (and sigma), not on a fixed 7th demonstration.")
print(found)
numbers["found"] = found
numbers["seconds"] = time.perf_counter() - t_start
(RESULT_DIR / f"{NAME}.json").write_text(json.dumps(jsonable(numbers), indent=1))
