"""A self-contained HTML page of one engagement report: no scripts, no external files (thumbnails inline as data
URIs, the curve as inline SVG), so it can be mailed or archived and opens offline in any browser."""

from __future__ import annotations

import re
from html import escape

from facecast.clips.report import EngagementReport
from facecast.vocab import AUDIENCE_GROUPS

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:960px;color:#222}
h1{font-size:1.5rem;margin-bottom:.2rem} .meta{color:#666;font-size:.9rem}
.cards{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0} .card{border:1px solid #ddd;border-radius:8px;
padding:.6rem 1rem;min-width:150px} .card b{display:block;font-size:1.6rem} .card small{color:#666}
table{border-collapse:collapse;margin:.6rem 0} td,th{border-bottom:1px solid #eee;padding:.25rem .6rem;text-align:left}
.moments{display:flex;gap:1rem;flex-wrap:wrap} .moment{font-size:.8rem;width:120px} .moment img{width:96px;
image-rendering:pixelated;border-radius:4px} .note{background:#eef4ff;padding:.4rem .8rem;border-radius:6px}
"""


def _curve_svg(report: EngagementReport, width: int = 900, height: int = 200) -> str:
    points = report.curve
    if not points:
        return ""
    duration = max(report.clip.duration_s, points[-1].t_s + 1)

    def x(t: float) -> float:
        return 40 + (width - 50) * t / duration

    def y(v: float) -> float:
        return 10 + (height - 40) * (1 - v)

    band = " ".join(f"{x(p.t_s + 0.5):.1f},{y(p.high):.1f}" for p in points)
    band += " " + " ".join(f"{x(p.t_s + 0.5):.1f},{y(p.low):.1f}" for p in reversed(points))
    line = " ".join(f"{x(p.t_s + 0.5):.1f},{y(p.value):.1f}" for p in points)
    ticks = "".join(
        f'<text x="{x(t):.1f}" y="{height - 8}" font-size="10" text-anchor="middle">{t:.0f}s</text>'
        for t in range(0, int(duration) + 1, max(1, int(duration) // 10))
    )
    marks = "".join(
        f'<path d="M{x(m.t_s):.1f},{y(1) - 2} l-5,-8 h10 z" fill="#222"><title>{m.t_s:.1f} s: '
        f"{escape(m.emotion)}</title></path>"
        for m in report.key_moments
    )
    axis = "".join(
        f'<text x="34" y="{y(v) + 3:.1f}" font-size="10" text-anchor="end">{v:.1f}</text>'
        f'<line x1="40" x2="{width - 10}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eee"/>'
        for v in (0, 0.5, 1)
    )
    return (
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="engagement per second">'
        f'{axis}<polygon points="{band}" fill="#e4572e" opacity=".2"/>'
        f'<polyline points="{line}" fill="none" stroke="#e4572e" stroke-width="2"/>{ticks}{marks}</svg>'
    )


def report_html(report: EngagementReport) -> str:
    clip = report.clip
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(clip.name)} — facecast "
        f"engagement report</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(clip.name)}</h1><div class='meta'>{clip.duration_s:.1f} s · {clip.width}×{clip.height} · "
        f"{escape(clip.codec)} · SHA-256 {clip.sha256[:16]}… · models "
        f"{escape(', '.join(f'{k} v{v}' for k, v in report.models.items()))}</div>",
    ]
    parts.append(f"<p class='meta'>{escape(report.provenance)}</p>")
    parts += [f"<p class='note'>{escape(note)}</p>" for note in report.notes]
    if report.faces_found:
        cards = [
            ("Engagement", report.engagement),
            ("Resonance", report.resonance),
            ("Shareability", report.shareability),
        ]
        parts.append(
            "<div class='cards'>"
            + "".join(
                f"<div class='card'>{name}<b>{s.value:.2f}</b>"
                f"<small>90 % interval {s.low:.2f}–{s.high:.2f}</small></div>"
                for name, s in cards
                if s is not None
            )
            + f"<div class='card'>Class<b>{escape(report.engagement_class or '')}</b><small>"
            + escape(", ".join(f"{k} {v:.0%}" for k, v in report.class_probabilities.items()))
            + "</small></div></div>"
        )
        parts.append(
            "<h2>Appeal per audience group</h2><table><tr><th>group</th><th>appeal</th><th>90 % interval"
            "</th></tr>"
            + "".join(
                f"<tr><td>{g.replace('_', ' ')}</td><td>{report.appeal[g].value:.3f}</td>"
                f"<td>{report.appeal[g].low:.3f}–{report.appeal[g].high:.3f}</td></tr>"
                for g in AUDIENCE_GROUPS
                if g in report.appeal
            )
            + "</table>"
        )
        parts.append("<h2>Engagement per second</h2>" + _curve_svg(report))
        if report.key_moments:
            parts.append(
                "<h2>Key moments</h2><div class='moments'>"
                + "".join(
                    "<div class='moment'>"
                    + (
                        f"<img alt='face' src='data:image/png;base64,{escape(m.thumbnail_png_b64, quote=True)}'>"
                        if _is_base64(m.thumbnail_png_b64)
                        else ""
                    )
                    + f"<br>{m.t_s:.1f} s · character {m.track_id}<br>{escape(m.emotion)} ({m.confidence:.0%}) · "
                    f"weight {m.weight:.0%}</div>"
                    for m in report.key_moments
                )
                + "</div>"
            )
        if report.characters:
            parts.append(
                "<h2>Characters</h2><table><tr><th>character</th><th>style</th><th>mostly</th>"
                "<th>on screen</th><th>emotions over time</th></tr>"
                + "".join(
                    f"<tr><td>{c.track_id}</td><td>{escape(c.style)}</td><td>{escape(c.dominant_emotion)}</td>"
                    f"<td>{c.screen_time_s:.1f} s</td><td>"
                    + escape(", ".join(f"{s.emotion} {s.start_s:.1f}–{s.end_s:.1f}s" for s in c.timeline))
                    + "</td></tr>"
                    for c in report.characters
                )
                + "</table>"
            )
    else:
        parts.append("<p class='note'>No faces were found in this clip, so there is no engagement prediction.</p>")
    parts.append(
        "<p class='meta'>Made by facecast. Intervals are split-conformal at "
        f"{report.interval_coverage:.0%} coverage.</p></body></html>"
    )
    return "".join(parts)


_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def _is_base64(text: str | None) -> bool:
    """A thumbnail goes into an attribute only as plain base64: a stored report is data, and data that is not a
    picture must not become markup (escaped besides, for the same reason)."""
    return bool(text) and _BASE64.fullmatch(text or "") is not None
