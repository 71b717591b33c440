"""Every number quoted in the docs equals what `make docs` writes from the committed results JSON."""

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("make_docs", ROOT / "scripts" / "make_docs.py")
make_docs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_docs)


def test_quoted_numbers_match_their_results():
    diffs = make_docs.differences()
    assert not diffs, "run `make docs` (or fix the results):\n" + "\n".join(diffs)


def test_every_doc_quotes_generated_numbers():
    for rel in make_docs.DOC_FILES:
        assert make_docs.REGION.search((ROOT / rel).read_text()), f"{rel} has no generated region"


def test_a_hand_edited_number_is_caught():
    text = (ROOT / "README.md").read_text()
    name, quoted = make_docs.REGION.search(text).groups()
    edited = text.replace(f"<!-- gen:{name} -->{quoted}<!-- /gen -->", f"<!-- gen:{name} -->{quoted}1<!-- /gen -->", 1)
    fixed, problems = make_docs.render(edited)
    assert not problems and fixed != edited and make_docs.REGION.search(fixed).group(2) == quoted
    _, problems = make_docs.render("<!-- gen:no.such.name -->1<!-- /gen -->")
    assert problems and "unknown region name" in problems[0]
