"""benchmarks/perf.py without running perf_analyzer: its CSV and -v output (real files captured from a smoke run in
benchmarks/testdata/), the capacity rule, the section it writes, its input data, and the marker replacement
(benchmarks/doc_markers.py) that must leave the rest of a document byte-identical."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from benchmarks import perf
from benchmarks.doc_markers import MarkerError, replace_section, write_section

TESTDATA = Path(__file__).resolve().parents[1] / "benchmarks" / "testdata"
CSV = TESTDATA / "perf_analyzer-expression_encoder-c1.csv"
STDOUT = TESTDATA / "perf_analyzer-expression_encoder-c1.stdout.txt"


def cell(model="expression_encoder", replicas=1, concurrency=1, rps=100.0, p95=10.0, stable=True, share=()):
    return perf.PerfResult(
        model, replicas, concurrency, rps, p95 / 2, p95 * 0.9, p95, p95 * 1.5, stable, 0.0, None, None, share
    )


# ----------------------------------------------------------------------------------------------- perf_analyzer output
def test_parses_a_real_perf_analyzer_csv():
    rows = perf.parse_perf_csv(CSV.read_text())
    assert len(rows) == 1
    row = rows[0]
    assert row["concurrency"] == 1
    assert row["infer_per_s"] == pytest.approx(555.331)
    # the file's latencies are microseconds; the parser gives ms
    assert (row["p50_ms"], row["p90_ms"], row["p95_ms"], row["p99_ms"]) == pytest.approx((1.588, 2.0, 2.386, 5.118))
    assert row["server_queue_ms"] == pytest.approx(0.041)
    assert row["server_compute_ms"] == pytest.approx((15 + 1447 + 58) / 1000)


def test_parses_several_levels_and_ignores_blank_lines():
    header, line = CSV.read_text().splitlines()
    second = line.replace("1,555.331", "4,900.5", 1)
    rows = perf.parse_perf_csv("\n".join([header, line, second, ""]) + "\n")
    assert [r["concurrency"] for r in rows] == [1, 4]
    assert rows[1]["infer_per_s"] == pytest.approx(900.5)
    assert perf.parse_perf_csv(header + "\n") == []


def test_reads_each_window_from_the_verbose_output():
    windows = perf.parse_windows(STDOUT.read_text())
    flat = [value for window in windows for value in window]
    assert flat == pytest.approx([524.868, 2.298, 590.678, 2.179, 550.339, 2.487])
    p95 = [w[1] for w in windows]  # the p95s differ more than the throughputs here: 2.487 vs their mean 2.321
    expected = max(abs(v - sum(p95) / 3) for v in p95) / (sum(p95) / 3)
    assert perf.window_spread(windows) == pytest.approx(expected)
    assert 0.0 < perf.window_spread(windows) < 0.2


def test_window_spread_of_equal_windows_is_zero_and_of_one_window_too():
    assert perf.window_spread([(100.0, 5.0)] * 3) == 0.0
    assert perf.window_spread([(100.0, 5.0)]) == 0.0
    assert perf.window_spread([(100.0, 5.0), (100.0, 7.5)]) == pytest.approx(0.2)  # p95 5 and 7.5: ±20 % of 6.25


# ----------------------------------------------------------------------------------------------- capacity rule
@pytest.mark.parametrize(
    ("peak", "one_replica", "expected"),
    [
        (1000, 555.331, 2),  # 1.8 → 2
        (1110.662, 555.331, 2),  # exactly 2 replicas' worth: not 3
        (1110.7, 555.331, 3),
        (0, 300, 1),  # never fewer than one
        (50, 300, 1),
        (3001, 300, 11),
    ],
)
def test_replicas_needed_is_the_ceiling_of_peak_over_one_replica(peak, one_replica, expected):
    assert perf.replicas_needed(peak, one_replica) == expected


def test_replicas_needed_rejects_a_zero_throughput():
    with pytest.raises(ValueError):
        perf.replicas_needed(100, 0)


def test_throughput_at_p95_takes_the_fastest_one_replica_cell_within_budget():
    results = [
        cell(concurrency=1, rps=300, p95=5),
        cell(concurrency=4, rps=450, p95=30),
        cell(concurrency=16, rps=500, p95=80),  # faster, but over a 50-ms budget
        cell(replicas=3, concurrency=4, rps=900, p95=20),  # 3 replicas never count for one replica's throughput
        cell(model="style_mapper", concurrency=4, rps=999, p95=1),
    ]
    assert perf.throughput_at_p95(results, "expression_encoder", 50).concurrency == 4
    assert perf.throughput_at_p95(results, "expression_encoder", 100).infer_per_s == 500
    assert perf.throughput_at_p95(results, "expression_encoder", 1) is None


def test_capacity_paragraph_fills_in_the_example():
    results = [cell(concurrency=4, rps=450, p95=30)]
    text = perf.capacity_paragraph(results, "expression_encoder", 50, 1000, 2)
    assert "450 infer/s" in text and "⌈1,000 ÷ 450⌉ = **3 replicas**" in text
    assert "No 1-replica cell" in perf.capacity_paragraph(results, "expression_encoder", 10, 1000, 2)


# ----------------------------------------------------------------------------------------------- the section
def render(results, **overrides):
    arguments = dict(
        models=list(perf.MODELS),
        concurrency=list(perf.CONCURRENCY),
        replicas=list(perf.REPLICAS),
        measurement=perf.Measurement(),
        command="make perf",
        load_before=(1.0, 1.0, 1.0),
        load_after=(2.0, 1.5, 1.2),
        started=datetime(2026, 12, 6, tzinfo=UTC),
        seconds=600,
        cores=2,
        machine="_machine line._",
        example=("expression_encoder", 50.0, 1000.0),
    )
    arguments.update(overrides)
    return perf.render_section(results, **arguments)


def test_section_has_one_table_per_model_with_both_replica_counts():
    results = [
        cell(concurrency=c, replicas=n, rps=100 * c / n, stable=(c != 16), share=(0.3, 0.3, 0.4) if n == 3 else (1.0,))
        for c in perf.CONCURRENCY
        for n in perf.REPLICAS
    ]
    text = render(results)
    assert "PARTIAL RUN" not in text
    assert text.count("### ") == 1 and "### expression_encoder" in text
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| concurrency | 1 replica: infer/s | p50 ms | p95 ms | p99 ms | 3 replicas: infer/s")
    assert [line.split(" | ")[0] for line in table[1:]] == ["| 1", "| 4", "| 16"]
    assert table[-1].endswith("| 0.33× |")  # 3 ÷ 1 replicas at concurrency 16
    assert "1,600 †" in table[-1]  # the unstable cell is marked
    assert "cannot be faster than 1" in text
    assert "30%–40%" in text
    assert text.rstrip().endswith("_machine line._")
    assert "1.00 / 1.00 / 1.00" in text and "2.00 / 1.50 / 1.20" in text


def test_a_partial_run_says_so_in_its_title():
    text = render([cell()], models=["expression_encoder"], concurrency=[1], replicas=[1])
    assert "PARTIAL RUN" in text.splitlines()[0]
    assert "cannot be faster" not in text  # one replica count: nothing to compare


# ----------------------------------------------------------------------------------------------- input data
def test_text_embedder_gets_real_minilm_ids():
    config = {
        "name": "text_embedder",
        "input": [
            {"name": "input_ids", "data_type": "TYPE_INT64", "dims": ["32"]},
            {"name": "attention_mask", "data_type": "TYPE_INT64", "dims": ["32"]},
        ],
    }
    data = perf.input_data(config)["data"]
    assert len(data) == 4
    ids = np.array(data[0]["input_ids"]["content"])
    mask = np.array(data[0]["attention_mask"]["content"])
    assert data[0]["input_ids"]["shape"] == [32]
    assert ids[0] == 101 and 102 in ids  # [CLS] ... [SEP]
    assert ids.min() >= 0 and ids.max() < 30522  # inside MiniLM's vocabulary (random bytes are not)
    assert set(mask.tolist()) <= {0, 1} and mask[: int(mask.sum())].all()


def test_pixel_only_models_keep_perf_analyzers_random_images():
    config = {
        "name": "expression_encoder",
        "input": [{"name": "image", "data_type": "TYPE_UINT8", "dims": [64, 64, 3]}],
    }
    assert perf.input_data(config) is None


def test_float_inputs_are_finite_masks_binary_and_embeddings_unit_length():
    config = {
        "name": "query_fuser",
        "input": [
            {"name": "text_embedding", "data_type": "TYPE_FP32", "dims": ["512"]},
            {"name": "emotion", "data_type": "TYPE_FP32", "dims": ["7"]},
            {"name": "present", "data_type": "TYPE_FP32", "dims": ["4"]},
            {"name": "image", "data_type": "TYPE_UINT8", "dims": ["8", "8", "3"]},
        ],
    }
    for row in perf.input_data(config)["data"]:
        embedding = np.array(row["text_embedding"]["content"])
        assert math.isclose(float(np.linalg.norm(embedding)), 1.0, rel_tol=1e-5)
        emotion = np.array(row["emotion"]["content"])
        assert np.isfinite(emotion).all() and (0 <= emotion).all() and (emotion < 1).all()
        present = np.array(row["present"]["content"])
        assert set(present.tolist()) <= {0.0, 1.0} and present[0] == 1.0
        image = np.array(row["image"]["content"])
        assert row["image"]["shape"] == [8, 8, 3] and image.size == 192 and image.max() <= 255


# ----------------------------------------------------------------------------------------------- doc markers
DOCUMENT = (
    "# Benchmarks\r\n\nhand-written text, CRLF above, trailing spaces   \n"
    "<!-- BEGIN serving -->\nx\n<!-- END serving -->\n"
)


def test_replacing_a_section_keeps_every_other_byte():
    first = replace_section(DOCUMENT, "perf", "first body")
    begin, end = "<!-- perf:begin -->", "<!-- perf:end -->"
    assert first.startswith(DOCUMENT)  # appended after the untouched original
    assert first[len(DOCUMENT) :] == f"\n{begin}\nfirst body\n{end}\n"
    prefix = first[: first.index(begin)]
    suffix = first[first.index(end) :]
    second = replace_section(first + "text after the section\n", "perf", "\n\nsecond\nbody\n\n")
    assert second == prefix + begin + "\nsecond\nbody\n" + suffix + "text after the section\n"
    assert replace_section(second, "perf", "second\nbody") == second  # idempotent


def test_markers_are_appended_on_a_new_line_when_the_file_lacks_a_final_newline():
    assert replace_section("no newline", "perf", "b") == "no newline\n\n<!-- perf:begin -->\nb\n<!-- perf:end -->\n"
    assert replace_section("", "perf", "b") == "<!-- perf:begin -->\nb\n<!-- perf:end -->\n"


def test_broken_markers_are_an_error_not_a_guess():
    with pytest.raises(MarkerError):
        replace_section("<!-- perf:begin -->\nno end\n", "perf", "b")
    with pytest.raises(MarkerError):
        replace_section("<!-- perf:end -->\n<!-- perf:begin -->\n", "perf", "b")
    twice = "<!-- perf:begin -->\n<!-- perf:end -->\n" * 2
    with pytest.raises(MarkerError):
        replace_section(twice, "perf", "b")


def test_write_section_is_byte_exact_on_disk_and_creates_a_missing_file(tmp_path):
    path = tmp_path / "benchmarks.md"
    path.write_bytes(DOCUMENT.encode())
    write_section(path, "perf", "body ✓")
    data = path.read_bytes()
    assert data.startswith(DOCUMENT.encode())  # CRLF and trailing spaces kept: no newline translation
    assert data.endswith("<!-- perf:begin -->\nbody ✓\n<!-- perf:end -->\n".encode())
    created = write_section(tmp_path / "new" / "operations.md", "hpa", "x", title="# Operations")
    assert created.read_text() == "# Operations\n\n<!-- hpa:begin -->\nx\n<!-- hpa:end -->\n"
    assert not list(tmp_path.rglob("*.partial"))


def test_batching_verdict_knows_two_settings_can_be_the_served_one():
    """benchmarks.batching: each setting is a change to the served one, so for a model whose threads spin already
    "threads spin" serves what "dynamic, delay 0" serves. Chosen there, the verdict is "= chosen", not a change to
    make; for a model served with sleeping threads it is a change."""
    from benchmarks import batching

    def cell(infer_per_s: float) -> perf.PerfResult:
        return perf.PerfResult("m", 1, 1, infer_per_s, 2.0, 2.5, 3.0, 3.5)

    rows = {s.label: {1: cell(100), 16: cell(100)} for s in batching.SETTINGS}
    rows["dynamic, delay 0, threads spin"] = {1: cell(100), 16: cell(120)}
    spinning, sleeping = "style_mapper", "engagement"
    assert batching.served_settings(spinning).spinning and not batching.served_settings(sleeping).spinning
    markdown = batching.render({spinning: rows, sleeping: rows}, perf.Measurement(), 1.0)
    assert f"- {spinning}: served `dynamic, delay 0` = chosen (`dynamic, delay 0, threads spin` is the same" in markdown
    assert f"- {sleeping}: served `dynamic, delay 0`, chosen `dynamic, delay 0, threads spin` (1.20×" in markdown


def test_the_face_check_names_the_pictures_no_threshold_can_refuse() -> None:
    """benchmarks/face_check.py: a picture without a face that scores above the lowest-scoring face cannot be refused
    by lowering the bar for faces; one below it could be."""
    from benchmarks.face_check import threshold_reach

    faces = [("emoji:a", None), ("demo:b", None)]
    others = [("coins", None), ("grass", None), ("logo", None)]
    line = threshold_reach(faces, np.array([0.9, 0.68]), others, np.array([0.85, 0.2, 0.68]))
    assert "lowest-scoring face is demo:b at 0.68" in line
    assert "scoring at least that: 2 (coins 0.85, logo 0.68)" in line
