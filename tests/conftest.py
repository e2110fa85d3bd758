"""Shared fixtures: real tritonservers on free loopback ports serving the shipped weights.

`expression_server` serves expression_encoder alone (the serving tests count its executions); `full_server` serves
all eight models (what `make run` serves) and is shared by every test of clip analysis, detection, the embedders,
the library and the app, so a test session starts two servers, not one per test file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from facecast.config import PROJECT_ROOT, Settings
from facecast.serving import environment, errors, process
from facecast.vocab import SERVED_MODELS

SHIPPED_WEIGHTS = Path(os.environ.get("FACECAST_TEST_WEIGHTS", PROJECT_ROOT / "weights" / "expression_encoder-cpu.pt"))


def require_triton() -> None:
    try:
        environment.locate_triton_environment(Settings().triton_env)
    except errors.TritonEnvironmentMissing as error:
        if os.environ.get("FACECAST_REQUIRE_TRITON") == "1":
            raise
        pytest.skip(f"no Triton server environment: {error}")


@contextmanager
def serving(repository: Path, state: Path) -> Iterator[Settings]:
    """A real Triton on free loopback ports serving `repository`; its run folder and DuckDB file live in `state`."""
    require_triton()
    with process.loopback_server(repository, state / "run", db_path=state / "facecast.duckdb") as (settings, _):
        yield settings


@pytest.fixture(scope="session")
def expression_repository(tmp_path_factory) -> Path:
    """A CPU-flavour model repository exported from the shipped weights, exactly as `make repository` does."""
    from export.triton_repository import write_model
    from training.checkpoints import load_checkpoint

    assert SHIPPED_WEIGHTS.is_file(), f"{SHIPPED_WEIGHTS} missing: `make train` rebuilds it"
    repository = tmp_path_factory.mktemp("model_repository")
    write_model(repository, load_checkpoint(SHIPPED_WEIGHTS), "cpu")
    return repository


@pytest.fixture(scope="session")
def expression_server(expression_repository, tmp_path_factory) -> Settings:
    """Settings of a running real Triton with expression_encoder loaded; stopped at the end of the session."""
    with serving(expression_repository, tmp_path_factory.mktemp("state")) as settings:
        yield settings


def settings_environment(settings: Settings) -> dict[str, str]:
    """FACECAST_* variables that make a subprocess or a Streamlit page use these settings."""
    return {
        "FACECAST_HTTP_PORT": str(settings.http_port),
        "FACECAST_GRPC_PORT": str(settings.grpc_port),
        "FACECAST_METRICS_PORT": str(settings.metrics_port),
        "FACECAST_RUN_DIR": str(settings.run_dir),
        "FACECAST_DB": str(settings.db_path),
        "FACECAST_MODEL_REPOSITORY": str(settings.model_repository),
    }


WEIGHTS_DIR = PROJECT_ROOT / "weights"
ALL_MODELS = SERVED_MODELS


def built_repository_is_current(built: Path) -> bool:
    """`make repository` finished (its stamp file) after every file it is built from changed (the Makefile's own
    rule): weights, the exporters and the network definitions. Otherwise the tests export afresh."""
    stamp = built / ".built"
    if not stamp.is_file() or not all((built / name / "config.pbtxt").is_file() for name in ALL_MODELS):
        return False
    sources = [
        *WEIGHTS_DIR.glob("*.pt"),
        *(PROJECT_ROOT / "export").rglob("*.py"),
        *(PROJECT_ROOT / "training" / "networks").glob("*.py"),
    ]
    return all(source.stat().st_mtime <= stamp.stat().st_mtime for source in sources)


@pytest.fixture(scope="session")
def full_repository(tmp_path_factory) -> Path:
    """All eight served models (what `make run` serves): a copy of model_repository/ when `make repository` built it
    from the current weights and code, otherwise exported from the shipped weights the same way."""
    import shutil

    built = PROJECT_ROOT / "model_repository"
    repository = tmp_path_factory.mktemp("full_repository")
    if built_repository_is_current(built):
        for name in ALL_MODELS:
            shutil.copytree(built / name, repository / name)
        return repository
    from export.embedders import write_embedder_models
    from export.triton_repository import write_repository

    # text_embedder joins MiniLM from its package; text_query is built from text_embedder + query_fuser weights
    weights = [WEIGHTS_DIR / f"{name}-cpu.pt" for name in ALL_MODELS if name not in ("text_embedder", "text_query")]
    missing = [str(w) for w in weights if not w.is_file()]
    assert not missing, f"shipped weights missing: {missing} (`make models` rebuilds them)"
    write_repository(repository, weights)
    write_embedder_models(repository, WEIGHTS_DIR, models=("text_embedder", "text_query"))
    return repository


@pytest.fixture(scope="session")
def full_server(full_repository, tmp_path_factory) -> Settings:
    """Settings of a running real Triton serving all eight models (clip analysis, the expression library, style
    mapping)."""
    with serving(full_repository, tmp_path_factory.mktemp("full_state")) as settings:
        yield settings


# ---- markers and skips --------------------------------------------------------------------------------------------

# A test that uses one of these starts (or shares) a real tritonserver: it carries the `triton` marker whether or not
# its file says so, so `-m "not triton"` selects exactly the tests that need no server.
SERVER_FIXTURES = {"full_server", "expression_server", "full_repository", "expression_repository"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.triton)


_SKIPPED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _SKIPPED.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI everything a test needs is installed (.ci/run), so a skip means a test silently did not run: fail."""
    if os.environ.get("CI") == "true" and _SKIPPED and exitstatus == 0:
        lines = "\n".join(f"  {line}" for line in _SKIPPED)
        session.config.get_terminal_writer().line(
            f"\nCI: {len(_SKIPPED)} test(s) skipped unexpectedly:\n{lines}", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
