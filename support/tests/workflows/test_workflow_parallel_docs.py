"""parallel_docs end to end: the orchestrator service fans out to the real documentation agent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_orchestrator.api.client import OrchestratorClient
from agent_orchestrator.demo.sample_repo import SampleRepo, create_sample_repo
from support.tests.agents.processes import free_port
from support.tests.workflows.flagship_platform import Platform, running_platform

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def platform(module_env: dict[str, str], log_dir: Path) -> Iterator[Platform]:
    with running_platform(module_env, log_dir, ["documentation"]) as running:
        yield running


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> SampleRepo:
    return create_sample_repo(tmp_path_factory.mktemp("docs") / "repo", free_port())


@pytest.fixture
def client(platform: Platform) -> Iterator[OrchestratorClient]:
    with platform.client() as c:
        yield c


def test_every_doc_type_is_generated_in_parallel_and_written(
    client: OrchestratorClient, repo: SampleRepo
) -> None:
    out = repo.path / "generated-docs"  # a relative output_dir is inside the repository
    created = client.create_run("parallel_docs", {"repo": str(repo.path), "output_dir": "generated-docs"})
    started: list[str] = []
    run = client.follow(
        created["id"], on_event=lambda e: started.append(e.node or "") if e.kind == "node_started" else None
    )

    assert run["status"] == "succeeded", run["error"]
    assert sorted(p.name for p in out.iterdir()) == [
        "api.md",
        "deployment_guide.md",
        "index.md",
        "user_guide.md",
    ]
    assert 'def greet(name: str, *, punctuation: str = "!") -> str' in (out / "api.md").read_text()
    assert "A tiny web service that greets people." in (out / "user_guide.md").read_text()
    assert "PORT" in (out / "deployment_guide.md").read_text()
    assert started.count("generate") == 3  # one branch per document type
    final = run["result"]["final_result"]
    assert final["outcome"] == "written"
    assert set(run["result"]["agent_assignments"]) == {"docs:api", "docs:user_guide", "docs:deployment_guide"}
    assert "| api | written |" in final["report"]


def test_a_failed_branch_is_reported_and_the_others_are_still_written(
    client: OrchestratorClient, repo: SampleRepo, platform: Platform
) -> None:
    out = platform.data_dir / "docs-partial"  # an absolute one inside the output root (the data folder)
    data = {
        "repo": str(repo.path),
        "output_dir": str(out),
        "doc_types": ["api", "user_guide"],
        "packages": ["nope"],
    }
    run = client.follow(client.create_run("parallel_docs", data)["id"])

    assert run["status"] == "failed"
    assert "1 of 2 written; failed: api" in run["error"]
    assert sorted(p.name for p in out.iterdir()) == ["index.md", "user_guide.md"]
    assert "api: not generated" in (out / "index.md").read_text()
    final = client.final_result(run)
    assert final is not None and "| api | **failed** |" in final["report"] and "nope" in final["report"]


def test_bad_doc_types_are_refused_naming_the_field(client: OrchestratorClient, repo: SampleRepo) -> None:
    from agent_orchestrator.api.client import OrchestratorError

    for doc_types in (["api", "api"], ["changelog"], []):
        with pytest.raises(OrchestratorError) as bad:
            client.create_run(
                "parallel_docs", {"repo": str(repo.path), "output_dir": "x", "doc_types": doc_types}
            )
        assert bad.value.status_code == 422 and "input.doc_types" in str(bad.value)


def test_a_repo_that_is_not_a_git_repository_is_refused_naming_the_field(
    client: OrchestratorClient, repo: SampleRepo, tmp_path: Path
) -> None:
    from agent_orchestrator.api.client import OrchestratorError

    for data, field, why in (
        ({"repo": str(tmp_path / "nowhere"), "output_dir": "x"}, "input.repo", "no such folder"),
        ({"repo": str(tmp_path), "output_dir": "x"}, "input.repo", "not a git repository"),
        ({"repo": str(repo.path), "output_dir": "x", "ref": "v9.9"}, "input.ref", "no branch, tag or commit"),
    ):
        with pytest.raises(OrchestratorError) as bad:
            client.create_run("parallel_docs", data)
        assert bad.value.status_code == 422 and field in str(bad.value) and why in str(bad.value)


def test_documents_are_never_written_outside_the_repository_and_the_output_root(
    client: OrchestratorClient, repo: SampleRepo, tmp_path: Path
) -> None:
    from agent_orchestrator.api.client import OrchestratorError

    outside = tmp_path / "elsewhere"
    (repo.path / "escape").symlink_to(outside, target_is_directory=True)
    for output_dir in (str(outside), "../../elsewhere", "escape", "escape/deeper", "/etc"):
        with pytest.raises(OrchestratorError) as bad:
            client.create_run("parallel_docs", {"repo": str(repo.path), "output_dir": output_dir})
        assert bad.value.status_code == 422, output_dir
        assert "input.output_dir" in str(bad.value) and "outside the repository" in str(bad.value)
    assert not outside.exists()
