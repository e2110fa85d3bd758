"""Analysing uploaded clips from the app: stream the upload to disk, reopen content already analysed (same SHA-256
and same pipeline fingerprint), otherwise analyse on Triton with a progress bar per stage, then store."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from facecast.clips.pipeline import STAGES, ClipAnalyzer, file_sha256
from facecast.clips.report import EngagementReport
from facecast.store import Store

CLIP_TYPES = ["mp4", "mov", "webm", "gif", "mkv"]
COPY_CHUNK = 8 << 20


@dataclass
class ClipResult:
    name: str
    analysis_id: int | None = None
    reopened: bool = False
    error: str | None = None


def save_upload(upload, folder: Path) -> Path:
    """Copy an uploaded file to disk in chunks (uploads of up to server.maxUploadSize never get copied whole in
    memory a second time); the name keeps only its last path part."""
    target = folder / Path(upload.name).name
    upload.seek(0)
    with open(target, "wb") as handle:
        shutil.copyfileobj(upload, handle, COPY_CHUNK)
    return target


def load_report(store: Store, analysis_id: int) -> EngagementReport | None:
    stored = store.analyses.get(analysis_id)
    return EngagementReport.from_dict(json.loads(stored.report_json)) if stored else None


def analyse_upload(
    upload,
    analyzer: ClipAnalyzer,
    store: Store,
    fingerprint: str,
    *,
    engagement_model: dict,
    analysed_by: str | None = None,
) -> ClipResult:
    """One uploaded clip through the stages, each with its own progress bar, scored by `engagement_model` (the
    store's active version; `fingerprint` must be made with it). MediaError (a bad file) is returned as the result's
    error; Triton errors propagate so the page can show its banner."""
    from facecast.media.video import MediaError

    result = ClipResult(upload.name)
    with st.status(f"{upload.name}", expanded=True) as status, tempfile.TemporaryDirectory(prefix="facecast-") as tmp:
        saving = st.progress(0.0, text="Saving the upload to disk")
        path = save_upload(upload, Path(tmp))
        saving.progress(1.0, text=f"Saved {path.stat().st_size / 1e6:.1f} MB to disk")
        hashing = st.progress(0.0, text="Checking whether this content was analysed before")
        digest = file_sha256(path)
        stored = store.analyses.find(digest, fingerprint)
        if stored is not None:
            hashing.progress(1.0, text=f"Already analysed (analysis {stored.id}): reopened, not recomputed")
            status.update(label=f"{upload.name}: reopened analysis {stored.id}", state="complete", expanded=False)
            return ClipResult(upload.name, stored.id, reopened=True)
        hashing.progress(1.0, text="New content: analysing")
        stage_text = {
            "decode": "Decoding frames",
            "detect": "Detecting faces",
            "track": "Tracking characters",
            "encode": "Reading expressions",
            "engagement": "Predicting engagement",
        }
        bars = {stage: st.progress(0.0, text=stage_text[stage]) for stage in STAGES}
        fractions = dict.fromkeys(STAGES, 0.0)
        cancel = threading.Event()
        # The pipeline reports progress from its decoding thread; Streamlit elements may only be updated from the
        # script's thread, so the analysis runs in a worker and this thread polls the fractions it reports.
        with ThreadPoolExecutor(max_workers=1) as pool:
            future = pool.submit(
                analyzer.analyze,
                path,
                name=upload.name,
                sha256=digest,
                progress=lambda stage, f: fractions.__setitem__(stage, f),
                cancel=cancel,
                engagement_model=engagement_model,
            )
            try:
                while not future.done():
                    for stage, bar in bars.items():
                        bar.progress(min(0.99, fractions[stage]), text=f"{stage_text[stage]}: {fractions[stage]:.0%}")
                    time.sleep(0.2)
                analysis = future.result()
            except MediaError as error:
                status.update(label=f"{upload.name}: cannot be analysed", state="error")
                result.error = str(error).replace(str(path), upload.name)
                return result
            finally:
                cancel.set()
        for stage, bar in bars.items():
            bar.progress(1.0, text=f"{stage_text[stage]}: done in {analysis.report.timings_s[stage]:.2f} s")
        storing = st.progress(0.0, text="Storing the report")
        result.analysis_id = store.analyses.add(analysis.record(analysed_by=analysed_by))
        storing.progress(1.0, text=f"Stored as analysis {result.analysis_id}")
        status.update(label=f"{upload.name}: analysed", state="complete", expanded=False)
    return result
