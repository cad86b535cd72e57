from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from shared.git import GitError, added_lines, changed_files, commit_all, diff_text, file_at, worktree
from support.tests.gitrepo import GitRepo

pytestmark = pytest.mark.unit


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("initial", {"app.py": "a = 1\nb = 2\nc = 3\n", "old.txt": "x\n"})
    repo.branch("feature")
    repo.commit(
        "change", {"app.py": "a = 1\nb = 20\nc = 3\nd = 4\n", "new.py": "x = 1\n", "logo.bin": b"\x00\x01"}
    )
    return repo


def test_added_lines_map_to_new_file_numbers(repo: GitRepo) -> None:
    lines = added_lines(diff_text(repo.path, "main", "feature", context=0))
    assert lines == {"app.py": {2, 4}, "new.py": {1}}


def test_changed_files_report_binary_and_counts(repo: GitRepo) -> None:
    files = {f.path: f for f in changed_files(repo.path, "main", "feature")}
    assert set(files) == {"app.py", "new.py", "logo.bin"}
    assert (files["app.py"].added, files["app.py"].deleted, files["app.py"].status) == (2, 1, "M")
    assert files["logo.bin"].binary and files["new.py"].status == "A"


def test_unknown_ref_is_a_clear_error(repo: GitRepo) -> None:
    with pytest.raises(GitError, match="unknown ref 'nope'"):
        diff_text(repo.path, "main", "nope")


def test_worktree_is_isolated_and_removed(repo: GitRepo, tmp_path: Path) -> None:
    with worktree(repo.path, "feature", tmp_path / "wts", branch="devtools/edit") as path:
        assert (path / "new.py").exists()
        (path / "added.txt").write_text("hello\n")
        commit = commit_all(path, "add file")
        assert commit is not None
    assert not path.exists()
    assert file_at(repo.path, "devtools/edit", "added.txt") == "hello\n"
    assert file_at(repo.path, "feature", "added.txt") is None


def test_worktree_under_a_relative_root_lands_in_cwd(
    repo: GitRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with worktree(repo.path, "feature", Path("relative-wts")) as path:
        assert path.is_absolute()
        assert path.parent == tmp_path / "relative-wts"
        assert (path / "new.py").read_text() == "x = 1\n"


def _make_trees(repo: str, root: str) -> list[str]:
    errors = []
    for _ in range(10):
        try:
            with worktree(repo, "main", Path(root)) as tree:
                assert (tree / "a.txt").read_text() == "a\n"
        except Exception as exc:  # collected: the test names them
            errors.append(f"{type(exc).__name__}: {exc}")
    return errors


def test_worktrees_of_one_repository_can_be_made_at_once(tmp_path: Path) -> None:
    """Agents are processes that add trees of the same repository at once (a ticket's parallel
    tasks): without the per-repository lock git's bookkeeping races (about 1 in 30 here)."""
    repo = GitRepo(tmp_path / "repo")
    repo.commit("one", {"a.txt": "a\n"})
    with ProcessPoolExecutor(8) as pool:
        results = list(pool.map(_make_trees, [str(repo.path)] * 8, [str(tmp_path / "trees")] * 8))
    assert [e for errors in results for e in errors] == []
    assert not any((tmp_path / "trees").iterdir())
