"""README.md and docs/ as a newcomer reads them: the README's contents list is its headings,
every relative link leads to a file and a heading that exist, every page of docs/ is in the
README's index, and the generated references are what ``python -m exporter.reference``
writes."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from exporter.reference import PAGES, render
from tests.promtools import ROOT

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES_READ = [README, *DOCS, ROOT / "bench" / "README.md", ROOT / "CHANGELOG.md"]
"""Every Markdown page a user is sent to from the README, whose links are checked."""

LINK = re.compile(r"(?<!!)\[(?:[^\]]|\][^(])*?\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6}) +(.+?) *#*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")


def prose(text: str) -> Iterator[str]:
    """The lines of ``text`` outside fenced code blocks, inline code spans removed."""
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield re.sub(r"`[^`]*`", "", line)


def headings(text: str) -> list[tuple[int, str]]:
    """Each heading outside code blocks: its level and its text as written."""
    found = []
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (match := HEADING.match(line)):
            found.append((len(match[1]), match[2]))
    return found


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text lower-cased, links reduced to their text,
    every character but letters, digits, ``_``, ``-`` and spaces dropped, spaces as ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a link into ``path`` may name, repeated headings numbered as GitHub does."""
    text = path.read_text(encoding="utf-8")
    seen: dict[str, int] = {}
    found = set(HTML_ANCHOR.findall(text))
    for _, title in headings(text):
        base = slug(title)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(page: Path) -> list[str]:
    """The relative links of ``page`` whose file or heading does not exist."""
    broken = []
    for line in prose(page.read_text(encoding="utf-8")):
        for target in LINK.findall(line):
            if re.match(r"[a-z][a-z+.-]*:", target):
                continue  # https:, mailto: ...: not a file of this repository
            name, _, anchor = target.partition("#")
            path = (page.parent / name).resolve() if name else page
            if not path.exists():
                broken.append(f"{target}: no such file")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{target}: no such heading")
    return broken


def test_should_list_every_readme_heading_in_its_table_of_contents() -> None:
    # Prepare
    text = README.read_text(encoding="utf-8")
    contents = text.split("\n## Contents\n", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^( *)- \[(.+)\]\(#(.+)\)$", contents, re.M)
    # Act
    sections = [(level, title) for level, title in headings(text) if level > 1]
    # Check: the same headings, in the same order and nesting, each linking to its own anchor
    assert sections[0] == (2, "Contents")
    assert [(2 + len(indent) // 2, title) for indent, title, _ in listed] == sections[1:]
    assert [anchor for _, _, anchor in listed] == [slug(title) for _, title in sections[1:]]


def test_should_resolve_every_relative_link_of_readme_and_docs() -> None:
    # Act
    broken = {str(page.relative_to(ROOT)): broken_links(page) for page in PAGES_READ}
    # Check
    assert {page: links for page, links in broken.items() if links} == {}


def test_should_find_a_broken_link_and_a_missing_heading(tmp_path: Path) -> None:
    # Prepare: a page that links well, and badly
    (tmp_path / "other.md").write_text("# Other\n\n## Its `part`: one, two\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md#its-part-one-two) [ok](#page) [web](https://example.com/x)\n"
        "[gone](missing.md) [no heading](other.md#nowhere)\n"
        "```sh\n[in code](missing.md)\n```\n`[inline](missing.md)`\n"
    )
    # Act
    broken = broken_links(page)
    # Check
    assert [b.split(":")[0] for b in broken] == ["missing.md", "other.md#nowhere"]


def test_should_index_every_docs_page_in_the_readme() -> None:
    # Prepare
    text = README.read_text(encoding="utf-8")
    index = text.split("\n## Documentation\n", 1)[1].split("\n## ", 1)[0]
    # Act
    indexed = set(re.findall(r"\]\(docs/([\w.-]+\.md)\)", index))
    # Check
    assert indexed == {page.name for page in DOCS}


def test_should_open_every_docs_page_with_its_title_and_what_it_is_for() -> None:
    # Act
    openings = {page.name: page.read_text(encoding="utf-8").split("\n\n", 2) for page in DOCS}
    # Check: a title, then a paragraph of prose (not a table, list or code)
    for name, (title, first, *_) in openings.items():
        assert re.fullmatch(r"# .+", title), name
        assert re.match(r"[A-Z`]", first) and not first.startswith("```"), name


def test_should_keep_the_generated_references_in_docs_in_sync() -> None:
    # Prepare
    pages = {page: (ROOT / page).read_text(encoding="utf-8") for page in PAGES}
    # Act
    fresh = {page: render(text, PAGES[page]) for page, text in pages.items()}
    # Check
    for page, text in pages.items():
        assert text == fresh[page], f"{page} is stale; run: .venv/bin/python -m exporter.reference"


def test_should_name_a_stale_reference_and_rewrite_it_with_the_one_command(
    tmp_path: Path,
) -> None:
    # Prepare: the committed pages, one with a reference row that has drifted
    for page in PAGES:
        (tmp_path / page).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / page, tmp_path / page)
    metrics = tmp_path / "docs" / "metrics.md"
    committed = metrics.read_text(encoding="utf-8")
    metrics.write_text(committed.replace("| `codat_exporter_companies` |", "| `old_name` |"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "exporter.reference", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip

    # Act
    check = run("--check")
    rewrite = run()
    after = run("--check")
    # Check
    assert (check.returncode, check.stdout) == (
        1, "docs/metrics.md: generated sections are stale; run: python -m exporter.reference\n"
    )  # fmt: skip
    assert rewrite.returncode == 0, rewrite.stderr
    assert metrics.read_text(encoding="utf-8") == committed
    assert (after.returncode, after.stdout) == (0, "")
