# %% [markdown]
# # 4. A hallucination signal? IE trajectories against right and wrong next entities
#
# The paper suggests IE could flag hallucinations. Here: on ICL country lists, SmolLM2-135M-Instruct's greedy
# next token is "right" when it is a country of the list's vocabulary (with its leading space) not already in
# the list, and "wrong" otherwise (e.g. " and", a repeat). `ie_jax.paper.analysis.hallucination_signal` first runs the
# default sweep of `ie_jax.measure` on the same lists (noise-regularised IE over its sigma grid) and takes the sigma
# it reports; it then scores every sequence with its per-sample noise-regularised IE (pointwise MI of the
# Gaussian-mixture estimator) at that sigma, on the layers whose population IE is measured there, and its spread over
# noise draws, and reports the point-biserial correlation with correctness and a bootstrap 95% CI. This is a
# correlation on one model and task, not a causal claim.
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
    "small": dict(n_samples=128, shots=4, layers=(0, 1, 15, 29), n_draws=2, n_boot=200, n_mc=32),
    # every third block (and the last), as the other notebooks
    "large": dict(n_samples=1024, shots=4, layers=(0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 29), n_draws=4, n_boot=2000,
                  n_mc=128),
}[SCALE]
t_start = time.perf_counter()

# %%
lm = ie_jax.load_model("default")
res = analysis.hallucination_signal(lm, "country", n_samples=CONFIG["n_samples"], shots=CONFIG["shots"],
                                    layers=CONFIG["layers"], n_draws=CONFIG["n_draws"], n_boot=CONFIG["n_boot"],
                                    n_mc=CONFIG["n_mc"])
SIGMA = res["sigma"]
print(f"sigma = {SIGMA:g} ({res['sigma_reason']}); layers scored: {res['n_layers_scored']} of {len(res['layers'])}")
n_right = int(res["correct"].sum())
print(f"{res['description']}: greedy next entity right in {n_right} of {len(res['correct'])} "
      f"({res['accuracy']:.1%}); first predictions {res['predicted_text']}")
print("corr(right, layer-mean pointwise IE) = %.3f [%.3f, %.3f]" % res["corr_ie"])
print("corr(right, spread over noise draws) = %.3f [%.3f, %.3f]" % res["corr_spread"])

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
layers, scored = res["layers"], res["scored"]
for mask, label in ((res["correct"], "right"), (~res["correct"], "wrong")):
    if mask.any() and scored.any():
        m = res["ie"][mask][:, scored]
        se = m.std(0) / np.sqrt(len(m))
        axes[0].errorbar(layers[scored], m.mean(0), yerr=1.96 * se, fmt="o-", ms=3, label=f"{label} (n={mask.sum()})")
        axes[1].hist(m.mean(1), bins=30, alpha=0.5, density=True, label=label)
axes[0].set(xlabel="block", ylabel="pointwise IE (nats)",
            title=f"mean IE trajectory, sigma={SIGMA:g} (layers with a measured IE)")
axes[1].set(xlabel="layer-mean pointwise IE (nats)", ylabel="density",
            title="r = %.2f [%.2f, %.2f]" % res["corr_ie"])
for ax in axes:
    ax.legend(fontsize=7)
fig.tight_layout()
fig.savefig(FIG_DIR / f"{NAME}_trajectories.png", dpi=110)

# %%
numbers = {"scale": SCALE, "config": CONFIG, "sigma": SIGMA, "sigma_reason": res["sigma_reason"], "units": "nats"}
numbers.update({k: res[k] for k in ("layers", "scored", "n_layers_scored", "accuracy", "trajectory_right",
                                    "trajectory_wrong", "corr_ie", "corr_spread", "predicted_text", "examples")})
sweep = res["sweep"]
numbers["sweep"] = {k: sweep[k] for k in ("layers", "sigma", "reported", "ie", "ie_text", "ie_measured", "ie_reason",
                                          "n_layers_measured",
                                          "n_layers", "ie_mean", "mi_macro", "grid")}
numbers["n_right"], numbers["n"] = n_right, len(res["correct"])
pw = res["ie"][:, scored]
numbers["mean_pointwise_ie"] = float(pw.mean()) if scored.any() else float("nan")
numbers["pointwise_ie_range"] = [float(pw.mean(1).min()), float(pw.mean(1).max())] if scored.any() else None
r, lo, hi = res["corr_ie"]
rs, los, his = res["corr_spread"]
excludes0 = lambda a, b: np.isfinite(a) and (a > 0 or b < 0)  # noqa: E731
if not scored.any() or not 0 < n_right < len(res["correct"]):
    verdict = "cannot be tested at measurable resolutions"
else:
    verdict = "holds" if excludes0(lo, hi) else "does not hold"
evidence = (f"at sigma = {SIGMA:g} ({res['n_layers_scored']} of {len(layers)} layers measured), r = {r:.3f} "
            f"[{lo:.3f}, {hi:.3f}] between being right and the layer-mean pointwise IE")
numbers["verdicts"] = [analysis.finding("Per-sample IE flags a wrong (hallucinated) next entity", verdict, evidence,
                                        sigma=SIGMA, n_layers_measured=res["n_layers_scored"], n_layers=len(layers))]
found = (
    f"What we found. SmolLM2-135M-Instruct continued {n_right} of {len(res['correct'])} country lists "
    f"({res['accuracy']:.0%}) with a new country. The default sweep on these lists reports sigma = {SIGMA:g}, where "
    f"IE is measured at {sweep['n_layers_measured']} of {sweep['n_layers']} layers (mean "
    f"{sweep['ie_mean']:.2f} nats over them); per-sample IE is scored there, on those layers. The point-biserial "
    f"correlation between being right and the layer-mean pointwise IE is r = {r:.3f} (95% bootstrap CI "
    f"[{lo:.3f}, {hi:.3f}]), and with the spread of IE over noise draws r = {rs:.3f} [{los:.3f}, {his:.3f}]; the "
    f"layer-mean pointwise IE of a sequence lies in "
    + (f"[{numbers['pointwise_ie_range'][0]:.2f}, {numbers['pointwise_ie_range'][1]:.2f}] nats. "
       if numbers["pointwise_ie_range"] else "no measured layer. ")
    + {"holds": "The IE correlation's CI excludes zero: at this resolution per-sample IE carries a small, "
                "correlational signal about correctness, so the paper's suggestion holds here in that weak sense; "
                "nothing here says the signal is more than a correlate of what the lists contain.",
       "does not hold": "The IE correlation's CI includes zero: no reliable hallucination signal from IE at this "
                        "resolution, so the paper's suggestion does not hold here. Per-sample IE measures how "
                        "distinguishable a sequence's states are from the others in the pool at one noise scale, which "
                        "has no direct link to whether the next token is right.",
       "cannot be tested at measurable resolutions": "With no measured layer (or one class only) there is nothing to "
                                                     "correlate: the paper's suggestion cannot be tested here."}[verdict])
print(found)
numbers["found"] = found
numbers["seconds"] = time.perf_counter() - t_start
(RESULT_DIR / f"{NAME}.json").write_text(json.dumps(jsonable(numbers), indent=1))
