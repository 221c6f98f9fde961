"""The docs that live in the repository stay followable: every relative link in README.md and
docs/*.md names a file that exists (and, for a link into a markdown file, a heading that exists),
the README's test command is the one CI runs, byte for byte, its in-process example runs as
written, docs/operations.md has a row for every option, and the paths in the README's "Where
things are" exist."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from server.config import OPTIONS

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])

#: a fenced code block (``` or ~~~ up to the same fence); links inside are not links
_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
#: inline code spans, whose brackets are text
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
#: an inline link or image target: ](target) or ](target "title")
_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...


def prose(text: str) -> str:
    """``text`` without fenced blocks and inline code spans."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def links(path: Path) -> list[str]:
    return _LINK.findall(prose(path.read_text(encoding="utf-8")))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for heading in _HEADING.findall(text):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def fenced_lines(markdown: str, section: str) -> list[str]:
    """The lines of the fenced blocks under the ``## section`` heading of ``markdown``."""
    start = markdown.index(f"\n## {section}\n")
    end = markdown.find("\n## ", start + 1)
    body = markdown[start:end if end != -1 else None]
    return [line for block in _FENCE.finditer(body)
            for line in block.group(0).splitlines()[1:-1]]


def test_the_docs_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in DOCS}
    assert {"README.md", "docs/api.md", "docs/operations.md", "docs/architecture.md"} <= names


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(doc: Path) -> None:
    broken = []
    for target in links(doc):
        if _EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif not dest.exists():
            broken.append(f"{target}: no such file {dest.relative_to(ROOT)}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in "
                          f"{dest.relative_to(ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)}:\n" + "\n".join(broken)


def test_link_checker_sees_links_and_skips_code() -> None:
    text = ("see [a](docs/a.md#x-y) and ![i](img.png \"t\")\n"
            "`[not](code.md)`\n```\n[nor](fenced.md)\n```\n")
    assert _LINK.findall(prose(text)) == ["docs/a.md#x-y", "img.png"]
    assert slug("The log tools: `roster wal inspect | verify | repair`") == \
        "the-log-tools-roster-wal-inspect--verify--repair"
    assert slug("Reporting presence (your gateway → Roster)") == \
        "reporting-presence-your-gateway--roster"


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    commands = fenced_lines(readme, "Two commands")
    test_command = [c for c in commands if "pytest" in c]
    assert len(test_command) == 1, commands
    assert test_command[0] in ci, f"{test_command[0]!r} is not a line of .ci/run"
    assert any(c.startswith("python3 -m venv .venv && ") and c.endswith(".venv/bin/roster serve")
               for c in commands), commands


def test_operations_lists_every_option() -> None:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    missing = [o.flag for o in OPTIONS
               if f"| `{o.flag}` | `{o.env}` | `{o.name}` |" not in text]
    assert not missing, f"docs/operations.md has no configuration row for {missing}"


def test_readme_python_example_runs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
    assert blocks, "the README has no python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "readme_example"})


def test_where_things_are_names_files_that_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("\n## Where things are\n")
    end = readme.find("\n## ", start + 1)
    section = readme[start:end if end != -1 else None]
    paths = re.findall(r"`((?:server|wal|bench|docs|tests)/[\w./]*)`", section)
    assert len(paths) > 10, paths
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert not missing, f"README's 'Where things are' names missing paths: {missing}"
