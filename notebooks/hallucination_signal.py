# %% [markdown]
# # 4. A hallucination signal? IE trajectories against right and wrong next entities
#
# The paper suggests IE could flag hallucinations. Here: on ICL country lists, SmolLM2-135M-Instruct's greedy
# next token is "right" when it is a country of the list's vocabulary (with its leading space) not already in
# the list, and "wrong" otherwise (e.g. " and", a repeat). `ie_jax.paper.analysis.hallucination_signal` scores every
# sequence with its per-sample noise-regularised IE (pointwise MI of the Gaussian-mixture estimator, sigma = 1
# centred std) per layer, and its spread over noise draws, and reports the point-biserial correlation with
# correctness and a bootstrap 95% CI. This is a correlation on one model and task, not a causal claim.
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

NAME = "hallucination_signal"
SCALE, FIG_DIR, RESULT_DIR = analysis.notebook_dirs(NAME)
CONFIG = {
    "small": dict(n_samples=128, shots=4, layers=(0, 1, 15, 29), n_draws=2, n_boot=200),
    "large": dict(n_samples=1024, shots=4, layers=None, n_draws=4, n_boot=2000),
}[SCALE]
SIGMA = 1.0
t_start = time.perf_counter()

# %%
lm = ie_jax.load_model("default")
res = analysis.hallucination_signal(lm, "country", n_samples=CONFIG["n_samples"], shots=CONFIG["shots"],
                                    sigma=SIGMA, layers=CONFIG["layers"], n_draws=CONFIG["n_draws"],
                                    n_boot=CONFIG["n_boot"])
n_right = int(res["correct"].sum())
print(f"{res['description']}: greedy next entity right in {n_right} of {len(res['correct'])} "
      f"({res['accuracy']:.1%}); first predictions {res['predicted_text']}")
print("corr(right, layer-mean pointwise IE) = %.3f [%.3f, %.3f]" % res["corr_ie"])
print("corr(right, spread over noise draws) = %.3f [%.3f, %.3f]" % res["corr_spread"])

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
layers = res["layers"]
for mask, label in ((res["correct"], "right"), (~res["correct"], "wrong")):
    if mask.any():
        m = res["ie"][mask]
        se = m.std(0) / np.sqrt(len(m))
        axes[0].errorbar(layers, m.mean(0), yerr=1.96 * se, fmt="o-", ms=3, label=f"{label} (n={mask.sum()})")
        axes[1].hist(res["ie"][mask].mean(1), bins=30, alpha=0.5, density=True, label=label)
axes[0].set(xlabel="block", ylabel="pointwise IE (nats)", title=f"mean IE trajectory, sigma={SIGMA}")
axes[1].set(xlabel="layer-mean pointwise IE (nats)", ylabel="density",
            title="r = %.2f [%.2f, %.2f]" % res["corr_ie"])
for ax in axes:
    ax.legend(fontsize=7)
fig.tight_layout()
fig.savefig(FIG_DIR / f"{NAME}_trajectories.png", dpi=110)

# %%
numbers = {"scale": SCALE, "config": CONFIG, "sigma": SIGMA, "units": "nats"}
numbers.update({k: res[k] for k in ("layers", "accuracy", "trajectory_right", "trajectory_wrong", "corr_ie",
                                    "corr_spread", "predicted_text", "examples")})
numbers["n_right"], numbers["n"] = n_right, len(res["correct"])
numbers["mean_pointwise_ie"] = float(res["ie"].mean())
r, lo, hi = res["corr_ie"]
rs, los, his = res["corr_spread"]
excludes0 = lambda a, b: np.isfinite(a) and (a > 0 or b < 0)
found = (
    f"What we found. SmolLM2-135M-Instruct continued {n_right} of {len(res['correct'])} country lists "
    f"({res['accuracy']:.0%}) with a new country. The point-biserial correlation between being right and the "
    f"layer-mean pointwise IE is r = {r:.3f} (95% bootstrap CI [{lo:.3f}, {hi:.3f}]), and with the spread of IE "
    f"over noise draws r = {rs:.3f} [{los:.3f}, {his:.3f}]. "
    + ("The IE correlation's CI excludes zero, so IE carries some signal about correctness here; it is small "
       "and correlational. " if excludes0(lo, hi) else
       "The IE correlation's CI includes zero: no reliable hallucination signal from IE here. ")
    + "Per-sample IE measures how distinguishable a sequence's states are from the others in the pool at one "
    "noise scale, which has no direct link to whether the next token is right; the paper's suggestion is not "
    "supported beyond this correlation.")
print(found)
numbers["found"] = found
numbers["seconds"] = time.perf_counter() - t_start
(RESULT_DIR / f"{NAME}.json").write_text(json.dumps(jsonable(numbers), indent=1))
