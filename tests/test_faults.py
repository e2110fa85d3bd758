"""Faults, for real (benchmarks/faults.py has the scenarios and writes their table): Triton SIGKILLed in the middle
of an analysis, and `kill -9` of the CLI, the app and bare writers in the middle of library ingest, feedback and
analysis storage. Each scenario checks that the store opens, holds only whole things, agrees with the FAISS index,
and that running the same work again finishes it."""

from __future__ import annotations

import pytest

from benchmarks import faults

pytestmark = pytest.mark.triton


def _held(result: faults.FaultResult) -> None:
    assert result.passed, f"{result.fault}: {result.outcome}; failed: {result.failures()}"


@pytest.mark.parametrize("kind", ["analysis", "feedback"])
def test_kill_9_while_storing_leaves_only_whole_records(tmp_path, kind):
    _held(faults.storing_killed(kind, tmp_path))


def test_kill_9_during_library_add_then_rerun_resumes(full_server, tmp_path):
    _held(faults.ingest_killed(full_server, tmp_path))


def test_triton_killed_mid_analysis_is_one_line_and_stores_nothing(full_repository, tmp_path):
    _held(faults.triton_killed_mid_analysis(full_repository, tmp_path))


def test_triton_restarted_mid_analysis_is_waited_for(full_repository, tmp_path):
    _held(faults.triton_restarted_mid_analysis(full_repository, tmp_path))


def test_app_killed_mid_analysis_leaves_a_consistent_store_and_starts_again(full_server, tmp_path):
    _held(faults.app_killed_mid_analysis(full_server, tmp_path))
