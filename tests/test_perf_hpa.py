"""benchmarks/hpa_recording.py and benchmarks/hpa_report.py without starting Triton: the load schedule, the scrape
format (readable by benchmarks/hpa_simulation.py's own loader), and the report over the committed smoke recording
(benchmarks/recordings/hpa-smoke: two real replicas, one minute)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from benchmarks import hpa_recording as recording
from benchmarks import hpa_report as report
from benchmarks import hpa_simulation as sim

SMOKE = Path(__file__).resolve().parents[1] / "benchmarks" / "recordings" / "hpa-smoke"


def test_send_times_follow_each_phases_rate():
    phases = [recording.Phase("idle", 10, 0), recording.Phase("low", 2, 4), recording.Phase("high", 1, 10)]
    times = recording.send_times(phases)
    assert len(times) == 8 + 10
    assert times[0] == (10.0, 1) and times[1] == (10.25, 1)
    assert times[8] == (12.0, 2) and times[-1] == (pytest.approx(12.9), 2)
    assert recording.phase_at(phases, 0).name == "idle"
    assert recording.phase_at(phases, 11.9).name == "low"
    assert recording.phase_at(phases, 13.0) is None


def test_phase_and_mix_arguments():
    assert recording.parse_phase("high:90:40") == recording.Phase("high", 90.0, 40.0)
    assert recording.parse_workload("face_detector:4:0.3") == recording.Workload("face_detector", 4, 0.3)


def test_scrape_values_keep_version_1_and_sum_failure_reasons():
    rows = [
        {"metric": "nv_inference_request_failure", "model": "face_detector", "version": "1", "value": 2.0},
        {"metric": "nv_inference_request_failure", "model": "face_detector", "version": "1", "value": 3.0},
        {"metric": "nv_inference_queue_duration_us", "model": "face_detector", "version": "1", "value": 7.0},
        {"metric": "nv_inference_queue_duration_us", "model": "face_detector", "version": "2", "value": 99.0},
        {"metric": "nv_cpu_utilization", "model": "", "version": "", "value": 0.5},
    ]
    assert recording.scrape_values(rows) == {
        "nv_inference_request_failure": {"face_detector": 5.0},
        "nv_inference_queue_duration_us": {"face_detector": 7.0},
    }


@pytest.fixture(scope="module")
def smoke():
    if not SMOKE.is_dir():
        pytest.skip("no smoke recording committed")
    return report.load(SMOKE)


def test_every_replica_file_reads_with_the_simulators_own_loader():
    files = sorted(SMOKE.glob("*.jsonl"))
    assert [f.name for f in files] == ["facecast-triton-0.jsonl", "facecast-triton-1.jsonl"]
    for path in files:
        meta, recorded = sim.load_recording(path, pod=path.stem)
        assert meta["pod"] == path.stem and "smoke" in meta["label"]
        scrapes = recorded[path.stem]
        assert len(scrapes) >= 10
        t, values = scrapes[-1]
        # recorded 2026-12-06 of the 7 models served before text_query (issue 16); a new recording has all of them
        assert set(sim.FACECAST_MODELS) - {"text_query"} <= set(values[sim.SUCCESS])
        assert {sim.QUEUE_US, sim.PENDING, sim.COMPUTE_US} <= set(values)
        assert [s[0] for s in scrapes] == sorted(s[0] for s in scrapes)
        # scheduled times on the scrape grid, so the simulator's 15-s syncs and strict window cut-offs line up
        assert all(t == meta["scrape_interval_s"] * i for i, (t, _) in enumerate(scrapes))
    assert sum(f.stat().st_size for f in files) < 200_000


def test_the_report_replays_both_pods_for_both_metrics(smoke, tmp_path):
    metas, recorded, raw = smoke
    assert set(recorded) == {"facecast-triton-0", "facecast-triton-1"}
    decisions = report.simulate(recorded)
    assert {r["metric"] for r in decisions["chart"]} == {sim.NVIDIA_CHART.name}
    assert {r["metric"] for r in decisions["facecast"]} == {sim.WAITING_REQUESTS.name}
    for rows in decisions.values():
        assert rows and all(set(r["pod_values"]) == set(recorded) for r in rows)
    assert all(r["desired"] >= 2 for r in decisions["facecast"])  # minReplicas 2
    served = report.served_rps(raw)
    spans = report.phase_spans(metas[0])
    assert [s[0] for s in spans] == ["idle", "low", "high", "low", "idle"]
    high = [rps for t, rps in served if spans[2][1] < t <= spans[2][2]]
    assert max(high) > 2 * max(rps for t, rps in served if spans[1][1] < t <= spans[1][2])

    png = report.draw_chart(tmp_path / "hpa.png", spans, served, decisions, 2, 8, "title")
    with Image.open(png) as image:
        assert image.size == (1100, 640) and image.format == "PNG"

    text = report.render_section(metas, decisions, spans, served, "make hpa-record", "images/hpa-simulation.png")
    assert text.splitlines()[0].endswith(f"— {metas[0]['label']}")  # shown as written: a smoke run says so itself
    assert "![desired replicas per metric over the recording](images/hpa-simulation.png)" in text
    assert sum(line.startswith("|") for line in text.splitlines()) == 2 + len(spans)  # header, rule, a row per phase


def test_report_main_writes_the_doc_section_and_the_png(tmp_path):
    if not SMOKE.is_dir():
        pytest.skip("no smoke recording committed")
    doc, png = tmp_path / "operations.md", tmp_path / "images" / "hpa.png"
    doc.write_text("# Operations\n\nthe lead's text\n")
    assert report.main(["--recording", str(SMOKE), "--doc", str(doc), "--png", str(png)]) == 0
    text = doc.read_text()
    assert text.startswith("# Operations\n\nthe lead's text\n\n<!-- hpa:begin -->\n")
    assert text.endswith("<!-- hpa:end -->\n")
    assert "](images/hpa.png)" in text
    assert png.stat().st_size > 5_000
    first = json.loads((SMOKE / "facecast-triton-0.jsonl").read_text().splitlines()[0])
    assert first["meta"]["replicas"] == 2
