"""The docs stay honest: every ```python block runs, and the reference pages list
every error code, environment variable, intent preset and decorator keyword.

Blocks fenced as ```python notest are not run. Blocks of one file run in order in
one namespace (a fresh module named ``docs_<file>``), in a temporary working
directory, with CACHEKIT_* and REDIS_URL removed from the environment.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from markdown_blocks import blocks, run_file

from cachekit.config import ENVIRONMENT
from cachekit.decorator import _PUBLIC_KEYWORDS, INTENTS
from cachekit.errors import error_codes

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _markdown_files() -> list[Path]:
    files = sorted(DOCS.rglob("*.md"))
    readme = ROOT / "README.md"
    if readme.exists():
        files.insert(0, readme)
    return files


def _module_name(path: Path) -> str:
    """``docs_<file>``: docs/keys.md -> docs_keys, README.md -> docs_README."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[0] == "docs":
        parts = parts[1:]
    return "docs_" + re.sub(r"\W", "_", "_".join(parts))


def _text(name: str) -> str:
    path = DOCS / name
    assert path.exists(), f"{path} is missing"
    return path.read_text(encoding="utf-8")


def test_the_docs_exist():
    assert (ROOT / "README.md").exists()
    for name in (
        "index.md",
        "getting-started.md",
        "decorator.md",
        "configuration.md",
        "keys.md",
        "serializers.md",
        "envelope.md",
        "reliability.md",
        "stats-and-health.md",
        "errors.md",
        "troubleshooting.md",
        "architecture.md",
    ):
        assert (DOCS / name).exists(), f"docs/{name} is missing"


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(path: Path, tmp_path: Path):
    run_file(path, tmp_path, _module_name(path), root=ROOT)


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_code_blocks_are_compilable_and_labelled(path: Path):
    """Every block names its language; every Python block (notest too) is valid syntax."""
    for block in blocks(path):
        where = f"{path.relative_to(ROOT)}: block {block.number} (line {block.line})"
        assert block.info, f"{where}: fence without a language (use ```text for output)"
        if block.is_python:
            try:
                compile(block.code, where, "exec")
            except SyntaxError as exc:
                pytest.fail(f"{where}: not valid Python: {exc}", pytrace=False)


def test_every_error_code_has_a_heading_in_errors_md():
    text = _text("errors.md")
    headings = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    missing = [code for code in error_codes() if not re.search(rf"\b{code}\b", headings)]
    assert not missing, f"docs/errors.md has no heading for {missing}"


def test_every_error_class_is_named_in_errors_md():
    text = _text("errors.md")
    missing = [cls.__name__ for cls in error_codes().values() if f"`{cls.__name__}`" not in text]
    assert not missing, f"docs/errors.md does not name {missing}"


def test_every_environment_variable_is_documented():
    text = _text("configuration.md")
    missing = [name for name in ENVIRONMENT if f"`{name}`" not in text]
    assert not missing, f"docs/configuration.md does not document {missing}"


def test_every_intent_preset_is_documented():
    text = _text("decorator.md")
    missing = [name for name in INTENTS if not re.search(rf"`@?cache\.{name}\b", text)]
    assert not missing, f"docs/decorator.md does not document the presets {missing}"


def test_every_decorator_keyword_has_a_row_in_decorator_md():
    text = _text("decorator.md")
    missing = [name for name in _PUBLIC_KEYWORDS if not re.search(rf"^\|\s*`{name}`", text, re.M)]
    assert not missing, f"docs/decorator.md has no table row for {missing}"


def _without_fences(path: Path) -> list[str]:
    """The lines of ``path`` with every fenced block (fences included) blanked."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for block in blocks(path):
        first = block.line - 2  # the opening fence (0-based)
        last = block.line - 1 + block.code.count("\n")  # the closing fence
        lines[first : last + 1] = [""] * (last + 1 - first)
    return lines


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of ``path``."""
    found: set[str] = set()
    for line in _without_fences(path):
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m[1]).replace("`", "").lower()
        slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in found:
            n += 1
            anchor = f"{slug}-{n}"
        found.add(anchor)
    return found


def test_relative_links_point_at_existing_files_and_headings():
    broken = []
    for path in _markdown_files():
        prose = re.sub(r"`+[^`\n]*`+", "", "\n".join(_without_fences(path)))
        for target in re.findall(r"\]\(([^)\s]+)\)", prose):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):
                continue  # http:, mailto:, ...
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.exists():
                broken.append(f"{path.relative_to(ROOT)} -> {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                broken.append(f"{path.relative_to(ROOT)} -> {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)
