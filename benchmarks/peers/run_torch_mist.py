"""torch-mist's estimators on the peers' samples (own venv, CPU torch wheel), each through its documented entry
point `torch_mist.estimate_mi(data=(x, y), estimator=NAME)` with every other argument at its default (recorded in
the JSON: hidden_dims [128], max_iterations 5,000, batch_size 128, Adam, 10% of the data for validation with early
stopping, the MI read out on the whole sample as estimate_mi does when no test_data is given).

MINE, InfoNCE and SMILE are its discriminative estimators; DoE (difference of entropies with normalising-flow
densities, conditional_linear / linear transforms) and GM (generative: affine-autoregressive joint flow and linear
marginal flows) are its flow-based ones.

  nice -n 15 /work/peer-venvs/torchmist/bin/python benchmarks/peers/run_torch_mist.py --subset
"""

from __future__ import annotations

import inspect
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

NAMES = {"mine": "MINE", "infonce": "InfoNCE", "smile": "SMILE", "doe": "DoE (flow)", "gm": "GM (flow)"}


def main(argv=None):
    args, data, meta, keys = common.argv_suites(argv)
    import numpy as np
    import torch
    import torch_mist
    from torch_mist.estimators import factories
    from torch_mist.utils import estimation

    torch.set_num_threads(1)

    def make(name):
        def run(x, y, seed):
            torch.manual_seed(seed)
            np.random.seed(seed)
            random.seed(seed)
            out = torch_mist.estimate_mi(data=(x.astype(np.float32), y.astype(np.float32)), estimator=name,
                                         verbose=False)
            if not isinstance(out, tuple):
                return float(out)
            log = out[-1]  # (estimate, training log) by default: record how long early stopping let it train
            return float(out[0]), {"train_iterations": int(log["iteration"].max())}
        return run

    defaults = {k: (v.default if v.default is not inspect.Parameter.empty else "required")
                for k, v in inspect.signature(torch_mist.estimate_mi).parameters.items()
                if k not in ("data", "estimator", "estimator_params")}
    defaults = {k: (v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)) for k, v in defaults.items()}
    settings = {}
    for name, label in NAMES.items():
        factory = inspect.signature(getattr(factories, name)).parameters
        settings[f"torch-mist {label}"] = {
            "call": f"torch_mist.estimate_mi(data=(x, y), estimator={name!r}, verbose=False)",
            "estimate_mi defaults": {**defaults, "max_iterations (when unset)": estimation.DEFAULT_MAX_ITERATIONS},
            "hidden_dims (when unset)": factories.DEFAULT_HIDDEN_DIMS,
            "factory defaults": {k: v.default for k, v in factory.items()
                                 if v.default is not inspect.Parameter.empty and isinstance(
                                     v.default, (int, float, str, bool, type(None)))},
            "seed": "torch/numpy/random seeded with the task's seed", "torch threads": 1}
    estimators = {f"torch-mist {label}": make(name) for name, label in NAMES.items()}
    if args.only:
        estimators = {k: v for k, v in estimators.items() if k.removeprefix("torch-mist ") in args.only}
    versions = common.pip_versions(["torch-mist", "torch", "pyro-ppl", "numpy", "scikit-learn"])
    common.run_estimators(estimators, keys, data, peer="torch-mist", package=f"torch-mist {versions['torch-mist']}",
                          versions=versions, settings=settings, budget_s=args.budget, budget_kind=args.budget_kind,
                          notes="CPU torch wheel; torch.set_num_threads(1) (the machine's 2 cores are shared); "
                                "pandas installed beside it (torch-mist 0.2.17 imports it without declaring it)")


if __name__ == "__main__":
    main()
