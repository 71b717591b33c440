"""latentmi (LMI: latent MI approximation, Gowri et al.) on the peers' samples (own venv, CPU torch wheel), through
its documented use: `pmis, embedding, model = lmi.estimate(X, Y)` then `np.nanmean(pmis)` with every argument at
its default (AECross autoencoders with 1024/512/256 hidden units, 8 latent dimensions, half the sample for
validation and the estimate, batch 512, lr 1e-4, up to 300 epochs, patience 30). The package README names the
function `lmi.lmi`; the released 0.1.3 calls it `lmi.estimate`.

latentmi's KSG (`latentmi.ksg.mi`, base=2 by default) returns pointwise MI in bits: the mean is converted to nats
here (times ln 2).

  nice -n 15 /work/peer-venvs/latentmi/bin/python benchmarks/peers/run_latentmi.py --subset
"""

from __future__ import annotations

import inspect
import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def main(argv=None):
    args, data, meta, keys = common.argv_suites(argv)
    import numpy as np
    import torch
    from latentmi import lmi

    torch.set_num_threads(1)

    def run(x, y, seed):
        torch.manual_seed(seed)
        np.random.seed(seed)  # lmi.estimate splits the sample with np.random.shuffle
        random.seed(seed)
        pmis, _, _ = lmi.estimate(x.astype(np.float32), y.astype(np.float32))
        return float(np.nanmean(pmis)) * math.log(2.0)

    defaults = {k: v.default for k, v in inspect.signature(lmi.estimate).parameters.items()
                if v.default is not inspect.Parameter.empty}
    settings = {"latentmi LMI": {"call": "np.nanmean(lmi.estimate(x, y)[0]) * ln 2 (bits -> nats)",
                                 "lmi.estimate defaults": defaults, "ksg": "k=3, base=2 (bits)",
                                 "seed": "torch/numpy/random seeded with the task's seed", "torch threads": 1}}
    versions = common.pip_versions(["latentmi", "torch", "numpy", "scipy", "scikit-learn"])
    common.run_estimators({"latentmi LMI": run}, keys, data, peer="latentmi",
                          package=f"latentmi {versions['latentmi']}", versions=versions, settings=settings,
                          budget_s=args.budget, budget_kind=args.budget_kind, notes="CPU torch wheel; torch.set_num_threads(1)")


if __name__ == "__main__":
    main()
