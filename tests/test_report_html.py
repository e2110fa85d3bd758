"""The HTML export of a report is a page someone opens: nothing from the report may become markup or script."""

from __future__ import annotations

import base64
import io

from PIL import Image

from facecast.clips.report import CharacterSummary, ClipInfo, EngagementReport, KeyMoment, Scored
from facecast.clips.report_html import report_html


def _png_b64() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def report(name: str, thumbnail: str) -> EngagementReport:
    clip = ClipInfo(
        name=name,
        sha256="ab" * 32,
        size_bytes=1,
        duration_s=2.0,
        width=64,
        height=64,
        fps=8.0,
        codec="h264",
        rotation=0,
    )
    scored = Scored(0.5, 0.4, 0.6)
    return EngagementReport(
        clip=clip,
        faces_found=True,
        engagement=scored,
        resonance=scored,
        shareability=scored,
        engagement_class="medium",
        class_probabilities={"low": 0.2, "medium": 0.6, "high": 0.2},
        characters=[
            CharacterSummary(
                track_id=1,
                first_s=0.0,
                last_s=1.0,
                observations=4,
                screen_time_s=1.0,
                dominant_emotion="happiness",
                style="<b>cartoon</b>",
                mean_face_height=0.3,
                timeline=[],
            )
        ],
        key_moments=[
            KeyMoment(t_s=0.5, weight=0.9, track_id=1, emotion="happiness", confidence=0.8, thumbnail_png_b64=thumbnail)
        ],
        notes=["<script>alert('note')</script>"],
    )


def test_a_real_thumbnail_is_inlined() -> None:
    thumbnail = _png_b64()
    page = report_html(report("cut.mp4", thumbnail))
    assert f"src='data:image/png;base64,{thumbnail}'" in page


def test_nothing_from_the_report_becomes_markup() -> None:
    page = report_html(report("<img src=x onerror=alert(1)>.mp4", "x' onerror='alert(1)"))
    assert "onerror" not in page.replace("onerror=alert(1)&gt;", "")  # only the escaped clip name mentions it
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;.mp4" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>cartoon</b>" not in page
    assert "x' onerror" not in page  # a thumbnail that is not base64 is left out, not pasted into the attribute
