"""The docs show measured numbers only through tables written from the committed results JSON: every table equals
what its writer makes of its JSON, every include region equals its table (scripts/docs.py, `make docs`), and
the READMEs quote no measured number of their own."""

import importlib.util
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("docs", ROOT / "scripts" / "docs.py")
docs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(docs)

# A time, size, rate, share or speed-up: what a hand-typed measurement looks like in prose ("95% CI" is not one).
MEASURED = re.compile(r"\d[\d,]*(?:\.\d+)?(?:\s?(?:ms|s|min|h|[KMGT]i?B|GB/s|TB/s|TFLOP/s|tok/s|%(?! ?CI))|x)(?![\w/])")
# The docs a user reads first and the analysis of the results; the others state settings with units (a 300 s
# timeout, 30% held out) and are held to the rule by review.
NO_HAND_NUMBERS = ("README.md", "notebooks/README.md", "notebooks/what_ie_measures.md")


def _prose(text: str) -> str:
    """text without include regions, fenced code, inline code and link targets."""
    text = docs.INCLUDE.sub("", text)
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`]*`", "", text)
    return re.sub(r"\]\([^)]*\)", "]", text)


def test_docs_match_their_tables_and_results():
    found = docs.problems()
    assert not found, "run `make docs` (or fix the writer or the doc):\n" + "\n".join(found)


def test_an_edited_region_is_restored():
    readme = (ROOT / "README.md").read_text()
    region = docs.INCLUDE.search(readme)
    assert region, "README.md includes no table"
    edited = readme.replace(region[0], region[1] + region[3].replace("|", "| 1", 1) + region[4], 1)
    assert edited != readme
    assert docs.refresh(edited, lambda rel: (ROOT / rel).read_text()) == readme


def test_a_table_that_differs_from_its_json_is_caught(monkeypatch):
    table = ROOT / "benchmarks" / "results" / "capture_cpu.md"
    monkeypatch.setattr(docs, "tables", lambda: {table: table.read_text() + "edited\n"})
    assert docs.problems() == [
        "benchmarks/results/capture_cpu.md: differs from what its writer makes of the results JSON"]


def test_broken_includes_and_links_are_caught(tmp_path, monkeypatch):
    (tmp_path / "t.md").write_text("| a |\n")
    (tmp_path / "README.md").write_text(
        "<!-- include: t.md -->\n| a |\n<!-- /include -->\n"  # fine
        "<!-- include: missing.md -->\n<!-- /include -->\n"
        "<!-- include: t.md -->\nno end\n"
        "[ok](t.md) [gone](gone.md) [web](https://example.org/x.md)\n")
    monkeypatch.setattr(docs, "ROOT", tmp_path)
    monkeypatch.setattr(docs, "tables", dict)
    found = docs.problems()
    assert any("includes missing.md" in p for p in found)
    assert any("without its <!-- /include -->" in p for p in found)
    assert any("links to gone.md" in p for p in found)
    assert len(found) == 3  # the region whose body is the file's text is fine


def test_readme_keeps_the_two_setup_commands():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Set up on a fresh machine", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)[1]
    assert [line.split("#")[0].strip() for line in block.splitlines()] == ["make run", "make test"]


def test_docs_have_no_generated_regions():
    for pattern in docs.DOCS:
        for path in ROOT.glob(pattern):
            assert "<!-- gen:" not in path.read_text(), path


def test_readmes_quote_no_measured_number():
    for rel in NO_HAND_NUMBERS:
        found = MEASURED.findall(_prose((ROOT / rel).read_text()))
        assert not found, f"{rel} quotes numbers by hand: {found}; put them in a results table and include it"
    assert MEASURED.search("took 5.3 s") and MEASURED.search("5.3x the reference") and not _prose("`1.2 s`")
    assert not MEASURED.search("512 x 512 pairs, 95% CI")
