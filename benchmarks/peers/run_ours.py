"""ie_jax's default on the peers' samples (the project venv, run from the repository root so that `import ie_jax`
resolves to this checkout): `ie_jax.mi.estimate_batch(x[None], y[None], protocol="fast")`, the call of
benchmarks/bmi_suite.py's `estimate` stage, one task per call so that its wall time per task is measured as the
peers' is (compilation included: every new shape compiles, as a peer's first step does).

  nice -n 15 .venv/bin/python benchmarks/peers/run_ours.py [--suite v1|v2|all] [--seeds 0,1,2]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))
import common  # noqa: E402


def main(argv=None):
    args, data, meta, keys = common.argv_suites(argv)
    import jax
    import numpy as np

    import ie_jax
    import ie_jax.mi as mi

    assert Path(ie_jax.__file__).resolve().is_relative_to(common.ROOT), ie_jax.__file__

    def ours(x, y, seed):
        r = mi.estimate_batch(np.asarray(x, np.float32)[None], np.asarray(y, np.float32)[None], protocol="fast")[0]
        dg = r.diagnostics
        return r.value, {"ci95": [float(v) for v in r.ci95], "selected": dg.get("selected"),
                         "flags": list(dg.get("flags", []))}

    versions = common.pip_versions(["ie-jax", "jax", "jaxlib", "flax", "optax", "numpy"])
    versions["ie_jax commit"] = common.git_commit()
    versions["jax backend"] = jax.devices()[0].platform
    common.run_estimators(
        {"ie_jax default": ours}, keys, data, peer="ie_jax (ours)", package=f"ie_jax {versions['ie-jax']} @ {versions['ie_jax commit'].split()[0]}",
        versions=versions,
        settings={"ie_jax default": {"call": "ie_jax.mi.estimate_batch(x[None], y[None], protocol='fast')",
                                     "protocol": "fast", "seed": 0, "input dtype": "float32",
                                     "one task per call": True}},
        budget_s=args.budget, budget_kind=args.budget_kind)


if __name__ == "__main__":
    main()
