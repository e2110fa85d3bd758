"""A served model's counters from Triton's statistics API, read once they have settled.

Triton's python backend records an execution's statistics after its response has gone out, so counters read right
after the last answer can still miss it (CI under load saw 0 where 1 was due). Tests that count requests or
executions read `settled_model_counts` after their requests, never the counters straight away.
"""

from __future__ import annotations

import time

import tritonclient.http as triton_http


def model_counts(url: str, model: str) -> tuple[int, int, int]:
    """(successful requests, rows inferred, executions) of `model` so far."""
    stats = triton_http.InferenceServerClient(url).get_inference_statistics(model)["model_stats"][0]
    requests = int(stats["inference_stats"]["success"]["count"])
    return requests, int(stats["inference_count"]), int(stats["execution_count"])


def settled_model_counts(
    url: str, model: str, before: tuple[int, int, int], timeout_s: float = 5.0
) -> tuple[int, int, int]:
    """The counts once the requests just answered are recorded: waits for a change from `before`, then a moment for
    the rest (anything still being recorded lands then and shows in the caller's assertion)."""
    deadline = time.monotonic() + timeout_s
    counts = model_counts(url, model)
    while counts == before and time.monotonic() < deadline:
        time.sleep(0.05)
        counts = model_counts(url, model)
    time.sleep(0.2)
    return model_counts(url, model)
