"""shared/specfile.py: the strict YAML reader phase files and pattern files share, and key paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.specfile import REPO_ROOT, SpecFileError, display_path, key_path, read_mapping

pytestmark = pytest.mark.unit


def _refusal(path: Path, text: str) -> SpecFileError:
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecFileError) as caught:
        read_mapping(path, "at least `phases:`")
    return caught.value


def test_reads_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("name: x\nsteps: [1, 2]\n", encoding="utf-8")
    assert read_mapping(path, "`name:`") == {"name": "x", "steps": [1, 2]}


def test_a_repeated_key_is_refused_with_its_line(tmp_path: Path) -> None:
    error = _refusal(tmp_path / "dup.yaml", "phases:\n  a: 1\n  a: 2\n")
    assert (error.key, error.reason) == ("a (line 3)", "duplicate key")


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    error = _refusal(tmp_path / "bad.yaml", "phases: [\n")
    assert error.key == "(line 2, column 1)"
    assert error.reason.startswith("not valid YAML")


@pytest.mark.parametrize("text", ["- a\n- list\n", ""])
def test_anything_but_a_mapping_says_what_it_must_hold(tmp_path: Path, text: str) -> None:
    error = _refusal(tmp_path / "list.yaml", text)
    assert (error.key, error.reason) == ("(top level)", "must be a mapping with at least `phases:`")


def test_an_unreadable_file_is_named_as_such(tmp_path: Path) -> None:
    with pytest.raises(SpecFileError) as caught:
        read_mapping(tmp_path / "absent.yaml", "anything")
    assert caught.value.key == "(file)"
    assert caught.value.reason.startswith("cannot be read: ")


def test_display_path_is_relative_inside_the_checkout_only(tmp_path: Path) -> None:
    assert display_path(REPO_ROOT / "config" / "phases" / "default.yaml") == "config/phases/default.yaml"
    assert display_path(tmp_path / "x.yaml") == str(tmp_path / "x.yaml")


def test_key_path_reads_as_the_file_is_written() -> None:
    assert key_path(["phases", 2, "tasks", 1, "depends_on"]) == "phases[2].tasks[1].depends_on"
    assert key_path([]) == "(top level)"
