"""bmi's own estimators (benchmark-mi 0.1.3, in its own venv with the jax it pins) on the peers' samples, each with
its documented defaults (constructor defaults of benchmark-mi 0.1.3; neural ones: MLP (16, 8), batch 256,
10,000 steps, lr 0.1, half the sample held out for the readout, seed 42; KSG: neighbourhoods (5, 10), the first
estimate; histogram: 5 bins per dimension).

  nice -n 15 /work/peer-venvs/bmi/bin/python benchmarks/peers/run_bmi.py --only CCA,KSG,histogram
  nice -n 15 /work/peer-venvs/bmi/bin/python benchmarks/peers/run_bmi.py --only MINE,InfoNCE,NWJ,DV --subset

The histogram fills a dense table of 5^(dim_x + dim_y) cells with Python loops over every cell: it is run where
dim_x + dim_y <= HISTOGRAM_MAX_DIM and recorded as not applicable elsewhere.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

HISTOGRAM_MAX_DIM = 6


def main(argv=None):
    args, data, meta, keys = common.argv_suites(argv)
    import bmi.estimators as be

    def histogram(x, y, seed):
        if x.shape[1] + y.shape[1] > HISTOGRAM_MAX_DIM:
            raise NotImplementedError(f"not run: 5^{x.shape[1] + y.shape[1]} histogram cells "
                                      f"(run where dim_x + dim_y <= {HISTOGRAM_MAX_DIM})")
        return be.HistogramEstimator().estimate(x, y)

    neural = {"MINE": be.MINEEstimator, "InfoNCE": be.InfoNCEEstimator, "NWJ": be.NWJEstimator,
              "DV": be.DonskerVaradhanEstimator}
    estimators = {f"bmi {k}": (lambda make: lambda x, y, seed: make(verbose=False).estimate(x, y))(v)
                  for k, v in neural.items()}
    estimators["bmi KSG"] = lambda x, y, seed: be.KSGEnsembleFirstEstimator().estimate(x, y)
    estimators["bmi CCA"] = lambda x, y, seed: be.CCAMutualInformationEstimator().estimate(x, y)
    estimators["bmi histogram"] = histogram
    settings = {f"bmi {k}": {**v(verbose=False).parameters().dict(), "verbose": False} for k, v in neural.items()}
    settings["bmi KSG"] = be.KSGEnsembleFirstEstimator().parameters().dict()
    settings["bmi CCA"] = {"class": "CCAMutualInformationEstimator", "arguments": "defaults"}
    settings["bmi histogram"] = {**be.HistogramEstimator().parameters().dict(),
                                 "run where": f"dim_x + dim_y <= {HISTOGRAM_MAX_DIM}"}
    for name in list(estimators):
        settings[name]["class"] = settings[name].get("class") or {
            "bmi KSG": "KSGEnsembleFirstEstimator", "bmi histogram": "HistogramEstimator"}.get(
            name, {f"bmi {k}": v.__name__ for k, v in neural.items()}.get(name))
    if args.only:
        estimators = {k: v for k, v in estimators.items() if k.removeprefix("bmi ") in args.only}
    versions = common.pip_versions(["benchmark-mi", "jax", "jaxlib", "equinox", "optax", "chex",
                                    "tensorflow-probability", "numpy", "scipy", "scikit-learn"])
    common.run_estimators(estimators, keys, data, peer="bmi", package=f"benchmark-mi {versions['benchmark-mi']}",
                          versions=versions, settings=settings, budget_s=args.budget, budget_kind=args.budget_kind,
                          notes="jax/jaxlib pinned to 0.4.13 and chex to 0.1.82: with pip's pick (jax 0.4.38), "
                                "equinox 0.10 (bmi pins <0.11) fails at import (jax.core.pp_eqn_rules removed)")


if __name__ == "__main__":
    main()
