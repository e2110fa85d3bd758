"""Calibration without a server: the metrics CSV's row checks and target mapping, model cards and activation, the
verdict on a validation, where a report says its numbers come from, Compare cuts across model versions, and the
job files the Calibrate page reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest

from facecast.calibration.manifest import TEMPLATE_CSV, check_manifest, safe_file_name, targets
from facecast.cli.jobs import read_job, write_json
from facecast.clips.compare import differences, model_mismatch
from facecast.clips.report import ClipInfo, EngagementReport, Scored
from facecast.clips.report_html import report_html
from facecast.store import open_store
from facecast.store.engagement_models import ModelNotActivatable
from training.studio_engagement import MIN_CLIPS_TO_ACTIVATE, verdict

HEADER = "path,views,likes,shares,watch_pct"


def known(*names):
    return lambda path: path if path in names else None


def test_a_clean_manifest_passes_and_names_each_rows_clip():
    csv = f"{HEADER}\na.mp4,1000,50,5,61.5\nb.mp4,900,20,1,40\n"
    checked = check_manifest(csv, known("a.mp4", "b.mp4"))
    assert checked.ok and checked.sources == ["a.mp4", "b.mp4"]
    assert checked.frame["watch_pct"].tolist() == [61.5, 40.0]


def test_every_bad_row_is_reported_at_once_with_what_is_wrong():
    csv = (
        f"{HEADER},appeal_teens\n"
        "a.mp4,1000,50,5,61.5,\n"  # fine
        "gone.mp4,1000,50,5,61.5,\n"  # unknown clip
        "a.mp4,1000,50,5,61.5,\n"  # duplicate
        "b.mp4,1000,,5,61.5,\n"  # missing metric
        "c.mp4,1000,50,5,161,\n"  # out of range
        "d.mp4,0,50,5,10,\n"  # views not positive
        "e.mp4,1000,many,5,10,\n"  # not a number
        "f.mp4,1000,2000,5,10,1.5\n"  # likes above views, appeal out of [0, 1]
    )
    checked = check_manifest(csv, known("a.mp4", "b.mp4", "c.mp4", "d.mp4", "e.mp4", "f.mp4"))
    assert not checked.ok
    text = "\n".join(checked.problems)
    for expected in (
        "row 3: unknown clip gone.mp4",
        "row 4: a.mp4 is listed twice (rows 2 and 4)",
        "row 5: likes is missing",
        "row 6: watch_pct is a percentage in [0, 100], not 161",
        "row 7: views must be positive",
        "row 8: likes is not a number ('many')",
        "row 9: likes must be between 0 and views",
        "row 9: appeal_teens must be a survey score in [0, 1]",
    ):
        assert expected in text, text
    assert not any(problem.startswith("row 2:") for problem in checked.problems)


@pytest.mark.parametrize(
    "csv, message",
    [
        ("path,views,likes\na.mp4,1,1\n", "missing column(s) shares, watch_pct"),
        (f"{HEADER}\n", "no clips listed"),
        ("", "cannot be read as CSV"),
        (f"{HEADER},split\na.mp4,10,1,1,5,calib\n", "unknown column(s) split"),
    ],
)
def test_unusable_files_say_why(csv, message):
    checked = check_manifest(csv, known("a.mp4"))
    assert not checked.ok and message in checked.problems[0]


def test_the_template_is_a_valid_manifest():
    names = [line.split(",")[0] for line in TEMPLATE_CSV.splitlines()[1:]]
    assert check_manifest(TEMPLATE_CSV, known(*names)).ok


def test_metrics_become_the_documented_targets():
    rows = [f"c{i}.mp4,1000,{10 * i},{i},{10 * i}" for i in range(1, 7)]
    csv = f"{HEADER},appeal_children\n" + "\n".join(r + (",0.9" if i == 0 else ",") for i, r in enumerate(rows))
    checked = check_manifest(csv, lambda path: path)
    result = targets(checked.frame)
    np.testing.assert_allclose(result["engagement"], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], atol=1e-6)
    assert np.all(np.diff(result["resonance"]) > 0) and np.all(np.diff(result["shareability"]) > 0)
    assert result["appeal"][0, 0] == pytest.approx(0.9)  # given
    assert result["appeal"][1, 0] == pytest.approx(0.2)  # not given: the engagement probability
    assert result["engagement_class"].tolist() == [0, 0, 1, 1, 2, 2]  # the manifest's tertiles


def test_uploaded_names_cannot_escape_the_clips_folder():
    assert safe_file_name("../../etc/passwd") == "passwd"
    assert safe_file_name("cut a (final).mp4") == "cut a _final_.mp4"
    assert safe_file_name("..") == "clip"


# ---- model cards -------------------------------------------------------------------------------------------------


def test_the_default_serves_until_a_validated_version_is_activated_and_rollback_returns(tmp_path):
    with open_store(tmp_path / "facecast.duckdb") as store:
        models = store.engagement_models
        assert models.active().version == 1 and models.active().description == "synthetic audience model v1"
        assert models.previous() is None
        models.add(2, "calibrated on 20 studio clips, 2026-12-06", "lead@studio.test", {"clips": 20}, {}, True)
        models.add(3, "calibrated on 5 studio clips, 2026-12-06", "lead@studio.test", {"clips": 5}, {}, False)
        assert models.active().version == 1  # recorded, not live
        with pytest.raises(ModelNotActivatable, match="did not beat the default"):
            models.activate(3, "lead@studio.test")
        with pytest.raises(ModelNotActivatable, match="no engagement model version 9"):
            models.activate(9, "lead@studio.test")
        assert models.activate(2, "lead@studio.test").version == 2
        assert models.get(2).activated_by == "lead@studio.test"
        assert models.previous().version == 1
        assert models.activate(models.previous().version, "admin@studio.test").version == 1  # one-click rollback
        assert models.previous().version == 2
        assert [c.version for c in models.all()] == [3, 2, 1]
    with open_store(tmp_path / "facecast.duckdb", read_only=True) as again:  # it is in the file, not the process
        assert again.engagement_models.active().version == 1


def validation(n: int, gain: tuple[float, float]) -> dict:
    side = {"spearman": 0.5, "class_accuracy": 0.5, "coverage": 0.9}
    return {"clips": n, "default": side, "calibrated": side, "spearman_gain_interval": list(gain)}


def test_the_verdict_declines_too_few_clips_and_gains_chance_could_give():
    ok, statement = verdict(validation(5, (0.2, 0.5)))
    assert not ok and "Only 5 clips" in statement and f"at least {MIN_CLIPS_TO_ACTIVATE}" in statement
    ok, statement = verdict(validation(40, (-0.05, 0.3)))
    assert not ok and "within what chance gives" in statement
    ok, statement = verdict(validation(40, (0.05, 0.3)))
    assert ok and "can be activated" in statement


# ---- provenance ----------------------------------------------------------------------------------------------------


def report(name: str, engagement: float, model: dict | None) -> EngagementReport:
    return EngagementReport(
        clip=ClipInfo(name, "0" * 64, 1, 10.0, 64, 64, 24.0, "h264"),
        faces_found=True,
        engagement=Scored(engagement, engagement - 0.05, engagement + 0.05),
        resonance=Scored(0.5, 0.4, 0.6),
        shareability=Scored(0.5, 0.4, 0.6),
        engagement_lead_logit=0.3,
        engagement_model=model,
    )


CALIBRATED = {"version": 2, "description": "calibrated on 46 studio clips, 2026-12-08"}


def test_every_report_says_which_model_made_it():
    default = report("a.mp4", 0.6, None)  # stored before versions existed: the default made it
    assert default.engagement_version == 1 and "synthetic audience model v1" in default.provenance
    assert "not from a real audience" in default.provenance
    calibrated = report("b.mp4", 0.6, CALIBRATED)
    assert calibrated.provenance == "Engagement model v2: calibrated on 46 studio clips, 2026-12-08."
    assert "calibrated on 46 studio clips" in report_html(calibrated)
    round_trip = EngagementReport.from_dict(json.loads(json.dumps(calibrated.as_dict())))
    assert round_trip.engagement_model == CALIBRATED


def test_compare_refuses_to_judge_cuts_scored_by_different_models():
    same = {"a": report("a.mp4", 0.8, CALIBRATED), "b": report("b.mp4", 0.3, CALIBRATED)}
    assert model_mismatch(same) is None
    assert differences(same).set_index("score").loc["engagement", "clear?"] == "yes"
    mixed = {"a": report("a.mp4", 0.8, None), "b": report("b.mp4", 0.3, CALIBRATED)}
    message = model_mismatch(mixed)
    assert "different engagement models" in message and "version 1" in message and "version 2" in message
    assert set(differences(mixed)["clear?"]) == {"not comparable"}


# ---- job files -----------------------------------------------------------------------------------------------------


def test_a_job_reads_as_running_then_done_or_stopped(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        write_json(tmp_path / "job.json", {"pid": sleeper.pid, "started_by": "lead", "started_at": time.time()})
        write_json(tmp_path / "progress.json", {"stage": "validate", "fraction": 0.4, "message": "fold 3 of 5"})
        job = read_job(tmp_path)
        assert job.state == "running" and job.fraction == 0.4 and job.message == "fold 3 of 5"
        write_json(tmp_path / "result.json", {"ok": True, "version": 2})
        assert read_job(tmp_path).state == "done"
        os.remove(tmp_path / "result.json")
    finally:
        sleeper.kill()
        sleeper.wait()
    stopped = read_job(tmp_path)
    assert stopped.state == "stopped" and "without a result" in stopped.message
    write_json(tmp_path / "result.json", {"ok": False, "error": "no clip has a face"})
    assert read_job(tmp_path).state == "failed"


def test_report_versions_older_than_provenance_still_read():
    document = replace(report("a.mp4", 0.5, None), version=2).as_dict()
    document.pop("engagement_model")
    assert EngagementReport.from_dict(document).engagement_version == 1
