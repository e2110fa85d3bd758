"""Training the engagement model on a studio's own clips: the manifest format, the metric → target mapping, and
`facecast train engagement` end to end (clips analysed through a real Triton, weights written and loadable)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.clipmaker import emoji_over_photo
from tests.test_analysis import run_cli
from training.studio_engagement import StudioManifestError, metrics_to_targets, read_studio_manifest


def write_manifest(folder: Path, rows: list[dict], clips: bool = True) -> Path:
    for row in rows:
        if clips:
            (folder / row["path"]).write_bytes(b"")  # existence is what read_studio_manifest checks
    path = folder / "clips.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_metrics_become_documented_targets(tmp_path):
    rows = [dict(path=f"c{i}.mp4", views=1000, likes=10 * i, shares=i, watch_pct=10 * i) for i in range(1, 7)]
    rows[0]["appeal_children"] = 0.9
    frame = read_studio_manifest(write_manifest(tmp_path, rows))
    targets = metrics_to_targets(frame)
    np.testing.assert_allclose(targets["engagement"], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], atol=1e-6)
    assert np.all(np.diff(targets["resonance"]) > 0) and np.all(np.diff(targets["shareability"]) > 0)
    assert targets["appeal"][0, 0] == pytest.approx(0.9)  # given
    assert targets["appeal"][1, 0] == pytest.approx(0.2)  # not given: the engagement probability
    assert targets["engagement_class"].tolist() == [0, 0, 1, 1, 2, 2]  # the manifest's tertiles


@pytest.mark.parametrize(
    "rows, message",
    [
        ([dict(path="a.mp4", views=10, likes=1, shares=1)], "missing column"),
        ([dict(path="a.mp4", views=0, likes=1, shares=1, watch_pct=5)], "views must be positive"),
        ([dict(path="a.mp4", views=10, likes="many", shares=1, watch_pct=5)], "likes needs a non-negative number"),
        ([dict(path="a.mp4", views=10, likes=1, shares=1, watch_pct=150)], "percentage"),
    ],
)
def test_bad_manifests_are_refused_with_the_reason(tmp_path, rows, message):
    with pytest.raises(StudioManifestError, match=message):
        read_studio_manifest(write_manifest(tmp_path, rows))


def test_missing_clip_files_are_named(tmp_path):
    path = write_manifest(tmp_path, [dict(path="gone.mp4", views=10, likes=1, shares=1, watch_pct=5)], clips=False)
    with pytest.raises(StudioManifestError, match="gone.mp4"):
        read_studio_manifest(path)


@pytest.mark.triton
@pytest.mark.slow
def test_train_engagement_on_studio_clips(full_server, tmp_path):
    faces = [("grin", "twemoji"), ("sob", "noto"), ("rage|joy", "twemoji"), ("neutral_face", "openmoji")]
    rows = []
    for index, face in enumerate(faces):
        emoji_over_photo(tmp_path / f"cut{index}.mp4", [face], seconds=3.0, size=(320, 180), face_px=80)
        rows.append(
            dict(
                path=f"cut{index}.mp4",
                views=1000 + index,
                likes=50 * (index + 1),
                shares=5 * index,
                watch_pct=30 + 15 * index,
            )
        )
    manifest = tmp_path / "clips.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    out = tmp_path / "studio.pt"
    result = run_cli(
        full_server,
        "train",
        "engagement",
        "--manifest",
        str(manifest),
        "--out",
        str(out),
        "--max-epochs",
        "3",
        timeout=400,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "base model's intervals are kept" in result.stdout  # 4 clips are too few to recalibrate
    from training.checkpoints import load_checkpoint

    model = load_checkpoint(out)
    assert model.config.triton_name == "engagement"
