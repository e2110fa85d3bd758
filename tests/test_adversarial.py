"""Every case of the adversarial suite (benchmarks/adversarial.py, which writes docs/reliability.md's table from the
same cases) against the suite's Triton: each bad input must get its clear message, its exit code and leave nothing
stored; each odd-but-valid one must get its result."""

from __future__ import annotations

import pytest

from benchmarks.adversarial import CASES, Bench, Case

pytestmark = pytest.mark.triton


@pytest.fixture(scope="module")
def bench(full_server, tmp_path_factory) -> Bench:
    return Bench(tmp_path_factory.mktemp("adversarial"), full_server)


def test_the_suite_covers_at_least_forty_kinds_of_bad_input():
    assert len(CASES) >= 40
    assert len({(c.group, c.name) for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.group}-{c.name}"[:80])
def test_bad_input(bench: Bench, case: Case) -> None:
    outcome = case.run(bench)
    assert outcome.passed, (
        f"{case.name} ({case.surface}): must be {case.expected}; got {outcome.shown} [{outcome.detail}]"
    )
