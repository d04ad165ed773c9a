"""Every Kotlin and Swift source of the phone apps parses: a cheap guard on code that is only
compiled by Gradle and Xcode, which this machine does not have."""

from __future__ import annotations

from pathlib import Path

import pytest

MOBILE = Path(__file__).resolve().parents[1] / "mobile"
GRAMMARS = {".kt": "tree_sitter_kotlin", ".kts": "tree_sitter_kotlin", ".swift": "tree_sitter_swift"}


def _sources() -> list[Path]:
    return sorted(
        p for p in MOBILE.rglob("*") if p.suffix in GRAMMARS and not {".build", "build", ".gradle"} & set(p.parts)
    )


def _parser(suffix: str):
    tree_sitter = pytest.importorskip("tree_sitter", reason="pip install tree-sitter")
    grammar = pytest.importorskip(GRAMMARS[suffix], reason=f"pip install {GRAMMARS[suffix].replace('_', '-')}")
    return tree_sitter.Parser(tree_sitter.Language(grammar.language()))


def _problems(root) -> list[str]:
    """ERROR and MISSING nodes, outermost first, as 'line L, column C: ...'."""
    found, stack = [], [root]
    while stack:
        node = stack.pop()
        if node.is_missing:
            found.append((node.start_point, f"missing {node.type!r}"))
        elif node.is_error:
            found.append((node.start_point, f"cannot parse {node.text.decode(errors='replace')[:60]!r}"))
            continue
        if node.has_error:
            stack.extend(node.children)
    return [f"line {row + 1}, column {col + 1}: {what}" for (row, col), what in sorted(found)]


def test_the_mobile_apps_have_kotlin_and_swift_sources():
    suffixes = {p.suffix for p in _sources()}
    assert {".kt", ".kts", ".swift"} <= suffixes, f"expected Kotlin, Gradle Kotlin DSL and Swift under {MOBILE}"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(MOBILE)))
def test_source_parses_without_errors(path: Path):
    tree = _parser(path.suffix).parse(path.read_bytes())
    problems = _problems(tree.root_node)
    assert not problems, f"{path.relative_to(MOBILE.parent)}:\n  " + "\n  ".join(problems)
