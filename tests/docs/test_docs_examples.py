"""#15.24: the code blocks of README.md and docs/*.md run, so the docs cannot drift again.

One test per Markdown file (its failures name the file and the block's line); the convention
is in tests/docs/_blocks.py and docs/operations.md ("Docs examples are tests").
"""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

import pytest
from tests.docs._blocks import DocError, parse_blocks, shell_commands
from tests.docs._plan import DOCS, ROOT, run_session, steps_of


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_doc_examples_run(doc: Path, docs_sessions: dict[Path, Future[tuple[int, str]]]) -> None:
    code, output = docs_sessions[doc].result()  # raises the file's DocError, if any
    failure = output[output.find("DOCS-FAIL") :] if "DOCS-FAIL" in output else output[-4000:]
    assert code == 0, failure[:6000]


def _doc(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "doc.md"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- illustrative: -->\n```bash\nkeel demo\n```\n", "needs a reason"),
        ("<!-- illustrative:    -->\n```bash\nkeel demo\n```\n", "needs a reason"),
        ("<!-- check: policy -->\n```yaml\na: 1\n```\n", "unknown check kind 'policy'"),
        ("<!-- illustrative: why -->\n\n```bash\nkeel demo\n```\n", "right above a block"),
        ("<!-- ilustrative: typo -->\n```bash\nkeel demo\n```\n", "malformed marker"),
        ("```bash\nkeel demo\n", "never closed"),
    ],
)
def test_bad_markers_fail(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DocError, match=message):
        steps_of(parse_blocks(_doc(tmp_path, text), tmp_path))


@pytest.mark.parametrize("lang", ["", "yaml", "json", "text", "sql"])
def test_unmarked_block_that_cannot_run_fails(tmp_path: Path, lang: str) -> None:
    doc = _doc(tmp_path, f"intro\n\n```{lang}\nsomething: 1\n```\n")
    with pytest.raises(DocError, match=r"doc.md:3: a ```.* block the test cannot run"):
        steps_of(parse_blocks(doc, tmp_path))


def test_markers_classify_blocks(tmp_path: Path) -> None:
    doc = _doc(
        tmp_path,
        "<!-- illustrative: a diagram -->\n```\na -> b\n```\n"
        "<!-- check: trigger file=t.yaml -->\n```yaml\nname: x\n```\n"
        "```python\nx = 1\n```\n",
    )
    steps = steps_of(parse_blocks(doc, tmp_path))
    assert [(s["kind"], s["line"]) for s in steps] == [("check", 6), ("python", 9)]
    assert steps[0]["check"] == "trigger" and steps[0]["save_as"] == "t.yaml"


def test_shell_lines_join_continuations_and_read_exit_comments(tmp_path: Path) -> None:
    doc = _doc(
        tmp_path,
        "```bash\n# a comment line\nkeel a \\\n  --b 1   # exit 1 if drift\n"
        "keel c '#not-a-comment' # plain\n```\n",
    )
    commands = shell_commands(parse_blocks(doc, tmp_path)[0])
    assert [(c.line, c.text, sorted(c.exit_codes)) for c in commands] == [
        (3, "keel a --b 1", [0, 1]),
        (5, "keel c '#not-a-comment'", [0]),
    ]


def test_a_drifted_doc_fails_naming_file_and_line(docs_world: Path, tmp_path: Path) -> None:
    """The proof the test can fail: a flag keel does not have, and a method it lacks."""
    doc = _doc(tmp_path, "```bash\nkeel models list\nkeel models list --no-such-flag\n```\n")
    code, output = run_session(steps_of(parse_blocks(doc, tmp_path)), docs_world, tmp_path)
    assert code == 1
    assert "DOCS-FAIL doc.md:3: `keel models list --no-such-flag` exited 2" in output
