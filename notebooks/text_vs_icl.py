# %% [markdown]
# # 2. Natural text against ICL lists: the token-by-token rise of IE
#
# The paper reports that E(t) rises token by token on natural sentences too, but less steadily than on ICL
# lists. `ie_jax.paper.analysis.text_vs_icl` measures both at the same length T on SmolLM2-135M-Instruct (fp32):
# KJV windows of T tokens ending at a full stop (the paper's filter) against country lists, with the
# noise-regularised estimator (sigma = 1 centred std) and the prefix-entropy ceiling next to each curve.
#
# `IE_NB_SCALE=small|large`; small writes to `IE_NB_OUT`, large to notebooks/figures and notebooks/results.

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

NAME = "text_vs_icl"
SCALE, FIG_DIR, RESULT_DIR = analysis.notebook_dirs(NAME)
CONFIG = {
    "small": dict(n_samples=96, seq_len=8, layers=(0, 1, 15, 29), n_mc=32),
    "large": dict(n_samples=1024, seq_len=10, layers=None, n_mc=128),
}[SCALE]
SIGMA = 1.0
t_start = time.perf_counter()

# %%
lm = ie_jax.load_model("default")
res = analysis.text_vs_icl(lm, text="text:kjv", icl="icl:country", n_samples=CONFIG["n_samples"],
                           seq_len=CONFIG["seq_len"], sigma=SIGMA, layers=CONFIG["layers"], n_mc=CONFIG["n_mc"])
for k, r in res.items():
    print(f"{k}: {r['description']}; e.g. {r['examples'][0]!r}")
    print("  layer-mean E(t):", np.round(r["token_curve"].mean(0), 2).tolist())
    print("  per-layer IE:", np.round(r["ie"], 2).tolist())
    print("  prefix entropy:", np.round(r["prefix_entropy"], 2).tolist())

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
T = CONFIG["seq_len"]
for k, r in res.items():
    curve, ci = r["token_curve"].mean(0), r["token_curve_ci"].mean(0)
    line, = axes[0].plot(range(T), curve, "o-", label=f"{k}: E(t), mean over layers")
    axes[0].fill_between(range(T), ci[:, 0], ci[:, 1], alpha=0.25, color=line.get_color())
    axes[0].plot(range(T), r["prefix_entropy"], "--", color=line.get_color(), label=f"{k}: prefix entropy")
    axes[1].errorbar(r["layers"], r["ie"], yerr=np.abs(r["ie_ci"].T - r["ie"]), fmt="o-", ms=3, label=k)
axes[0].set(xlabel="token position t", ylabel="nats", title=f"E(t), sigma={SIGMA}, N={CONFIG['n_samples']}")
axes[1].set(xlabel="block", ylabel="IE (nats)", title="IE per layer (last token), 95% CI")
for ax in axes:
    ax.legend(fontsize=7)
fig.tight_layout()
fig.savefig(FIG_DIR / f"{NAME}_curves.png", dpi=110)

# %%
numbers = {"scale": SCALE, "config": CONFIG, "sigma": SIGMA, "units": "nats"}
for k, r in res.items():
    numbers[k] = {key: r[key] for key in ("layers", "token_curve", "token_curve_ci", "ie", "ie_ci", "prefix_entropy",
                                          "mi_macro", "mi_micro_mean", "mi_macro_ceiling", "macro_saturated",
                                          "examples")}
text_c, icl_c = res["text"]["token_curve"].mean(0), res["icl"]["token_curve"].mean(0)
steps_text = np.diff(text_c)
mono = lambda c: float(np.mean(np.diff(c) > 0))
found = (
    f"What we found. On KJV windows (T = {T}, N = {CONFIG['n_samples']}) the layer-mean E(t) goes from "
    f"{text_c[0]:.2f} to {text_c[-1]:.2f} nats, rising at {mono(text_c):.0%} of steps (largest step "
    f"{steps_text.max():.2f} nats); on country lists it goes from {icl_c[0]:.2f} to {icl_c[-1]:.2f}, rising at "
    f"{mono(icl_c):.0%} of steps. Mean IE over layers: text {res['text']['ie_mean']:.2f}, ICL "
    f"{res['icl']['ie_mean']:.2f} nats. The prefix entropies end at {res['text']['prefix_entropy'][-1]:.2f} (text) "
    f"and {res['icl']['prefix_entropy'][-1]:.2f} (ICL) nats: distinct text windows approach ln N within the first few "
    "tokens, so text curves are bounded by the sample size, not by the sentence. "
    + ("As in the paper, text rises less steadily than ICL lists. " if mono(text_c) < mono(icl_c) else
       "Unlike the paper, text rises at least as steadily as ICL lists here. ")
    + "Both curves are noise-regularised (sigma = 1) values; their level moves with sigma and N.")
print(found)
numbers["found"] = found
numbers["seconds"] = time.perf_counter() - t_start
(RESULT_DIR / f"{NAME}.json").write_text(json.dumps(jsonable(numbers), indent=1))
