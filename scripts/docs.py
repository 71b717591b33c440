"""The docs' tables and includes: `make docs` writes them, `--check` only compares (tests/test_docs.py runs it).

Every measured number in the docs sits in a table that a writer makes from committed results JSON: each script of
WRITERS has `tables() -> {path: markdown}`. A doc shows a table by including it, the region's body being the file:

    <!-- include: benchmarks/results/default_cost_h200.md -->
    ...the file's text, exactly...
    <!-- /include -->

or links to it. `make docs` rewrites the tables, then every include region from its file. `--check` lists each table
that differs from its JSON, each region that differs from its file, and each include or relative link to a missing
file, and exits 1 if there is any.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ("README.md", "docs/*.md", "benchmarks/README.md", "notebooks/*.md")
WRITERS = ("benchmarks/bmi_suite.py", "benchmarks/by_hand.py", "benchmarks/capture_cpu.py", "benchmarks/capture_gpu.py",
           "benchmarks/default_cost.py", "benchmarks/memory_plan.py", "benchmarks/mi_accuracy.py",
           "benchmarks/scaling_model.py", "benchmarks/sweep_e2e.py", "benchmarks/sweep_gpu.py",
           "scripts/notebook_tables.py")
INCLUDE = re.compile(r"(<!-- include: (\S+) -->\n)(.*?)(<!-- /include -->)", re.S)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def tables() -> dict[pathlib.Path, str]:
    """{path: text} of every table, as the writers make them from the committed JSON."""
    out = {}
    for rel in WRITERS:
        path, environ = ROOT / rel, dict(os.environ)  # a benchmark may set defaults (JAX_PLATFORMS) on import
        sys.path.insert(0, str(path.parent))  # for the script's own sibling imports
        try:
            spec = importlib.util.spec_from_file_location(f"docs_writer_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            out.update({pathlib.Path(p).resolve(): text for p, text in module.tables().items()})
        finally:
            sys.path.remove(str(path.parent))
            os.environ.clear()
            os.environ.update(environ)
    return out


def refresh(text: str, read) -> str:
    """text with each include region's body replaced by read(path relative to ROOT)."""
    return INCLUDE.sub(lambda m: m[1] + read(m[2]) + m[4], text)


def problems(write: bool = False) -> list[str]:
    """What differs (fixed in place when write); an empty list when the docs match their tables and JSON."""
    found = []
    for path, text in tables().items():
        if not path.is_file() or path.read_text() != text:
            if write:
                path.write_text(text)
            else:
                found.append(f"{path.relative_to(ROOT)}: differs from what its writer makes of the results JSON")

    def read(rel: str) -> str:
        if (ROOT / rel).is_file():
            return (ROOT / rel).read_text()
        found.append(f"{doc.relative_to(ROOT)}: includes {rel}, which does not exist")
        return ""

    for doc in (p for pattern in DOCS for p in sorted(ROOT.glob(pattern))):
        text = doc.read_text()
        if text.count("<!-- include:") != len(INCLUDE.findall(text)):
            found.append(f"{doc.relative_to(ROOT)}: an include marker without its <!-- /include -->")
        new = refresh(text, read)
        if new != text:
            if write:
                doc.write_text(new)
            else:
                found.append(f"{doc.relative_to(ROOT)}: an include region differs from its file")
        found += [f"{doc.relative_to(ROOT)}: links to {target}, which does not exist" for target in LINK.findall(text)
                  if "://" not in target and not (doc.parent / target).exists()]
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on any difference")
    found = problems(write=not parser.parse_args(argv).check)
    print("\n".join(found) or "docs match their tables and results")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
