"""The README's "Your own service" chapter is what the code's tables render, and covers them."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.profile_docs import (
    README_BEGIN,
    README_END,
    readme_block,
    render_chapter,
    update_readme,
)
from harness.targets.profile import RESULT_KEYS, TEMPLATE_VARIABLES
from harness.targets.profile_keys import OBSERVER_FIELDS, PROFILE_KEYS, TOTALS_FIELDS

README = Path(__file__).parents[2] / "README.md"


def test_the_readme_chapter_is_what_the_code_renders() -> None:
    block = readme_block(README.read_text(encoding="utf-8"))
    assert block == render_chapter().strip("\n"), (
        "the README's profile chapter is stale: run python -m harness.profile_docs")


def test_the_chapter_names_every_key_variable_result_and_field() -> None:
    chapter = render_chapter()
    for key in PROFILE_KEYS:
        assert f"| `{key.key}` |" in chapter, key
        assert f"`[{key.section}]`" in chapter, key
    for names in TEMPLATE_VARIABLES.values():
        for name in names:
            assert f"`{{{name}}}`" in chapter
    for keys in RESULT_KEYS.values():
        for key in keys:
            assert f"| `{key}` |" in chapter
    for field in (*OBSERVER_FIELDS, *TOTALS_FIELDS):
        assert f"| `{field.name}` |" in chapter
    for word in ("tokenchaos doctor", "unknown", "DEFERRABLE", "left out"):
        assert word in chapter


def test_update_readme_rewrites_only_the_block_and_then_leaves_it(tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    path.write_text(f"# title\n\n{README_BEGIN}\nold\n{README_END}\n\n## after\n")
    assert update_readme(path) is True
    text = path.read_text()
    assert text.startswith("# title\n\n" + README_BEGIN + "\n## Your own service")
    assert text.endswith(README_END + "\n\n## after\n")
    assert update_readme(path) is False


def test_a_readme_without_the_markers_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    path.write_text("# no markers\n")
    with pytest.raises(UsageError, match="profile:begin"):
        update_readme(path)
