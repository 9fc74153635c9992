"""The documentation stays readable and self-contained: every link it makes resolves inside the repository."""

from __future__ import annotations

import re
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
# [text](target) and ![alt](target); the target ends at a space (a title) or the closing parenthesis
MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)")
INLINE_CODE = re.compile(r"`[^`\n]*`")
# "FINDINGS.md #3", "see CONTRACT.md": documents that live outside the repository
OUTSIDE_DOCUMENT = re.compile(r"\b(FINDINGS|CONTRACT|MODELS|STYLE|PROVENANCE)\.md\b")
SOURCE_SUFFIXES = {".py", ".md", ".toml", ".cfg", ".txt", ".jsonl"}


def _local_targets(document: Path) -> list[tuple[str, Path]]:
    targets = []
    text = INLINE_CODE.sub("", document.read_text(encoding="utf-8"))  # `[a](` in code is not a link
    for target in MARKDOWN_LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a web address or an anchor in the same page
        targets.append((target, (document.parent / target.split("#")[0]).resolve()))
    return targets


def test_every_local_link_in_the_docs_resolves_inside_the_repository() -> None:
    broken = [
        f"{document.relative_to(PROJECT_ROOT)}: {target}"
        for document in DOCUMENTS
        for target, path in _local_targets(document)
        if not path.exists() or not path.is_relative_to(PROJECT_ROOT)
    ]
    assert not broken, f"links to missing or outside files: {broken}"


def test_the_link_checker_sees_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("See [the figures](figures.md#top), [the web](https://example.org), [here](#x), `[a](`.\n")
    assert [target for target, _ in _local_targets(page)] == ["figures.md#top"]


def test_readme_reads_in_minutes() -> None:
    lines = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines < 200, f"README.md has {lines} lines; move detail into docs/"


def test_no_file_points_to_documents_outside_the_repository() -> None:
    offenders = []
    for folder in ("rag", "ingest", "eval", "api", "tests", "docs"):
        for path in (PROJECT_ROOT / folder).rglob("*"):
            if path.suffix in SOURCE_SUFFIXES and path.resolve() != Path(__file__).resolve():
                for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                    if OUTSIDE_DOCUMENT.search(line):
                        offenders.append(f"{path.relative_to(PROJECT_ROOT)}:{number}")
    for name in ("README.md", "app.py", "Makefile", "pyproject.toml"):
        if OUTSIDE_DOCUMENT.search((PROJECT_ROOT / name).read_text(encoding="utf-8")):
            offenders.append(name)
    assert not offenders, f"these name a document the repository does not hold: {offenders}"
