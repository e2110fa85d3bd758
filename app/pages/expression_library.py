"""Expression library: find character expressions by words, by a reference face, by emotion and style; teach the
ranking with thumbs and "use this"; add faces from images or from analysed clips."""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from app import services
from app.components import auth, uploads
from app.components.banners import store_unavailable, triton_down
from facecast.clients.embedders import QueryError as EmbeddingQueryError
from facecast.library import Filters, LibraryError, Query
from facecast.library.feedback import FeedbackError
from facecast.serving.errors import InferenceFailed, ModelUnavailable, TritonUnavailable
from facecast.store import StoreError
from facecast.vocab import EMOTIONS, STYLES

TRITON_ERRORS = (TritonUnavailable, ModelUnavailable, InferenceFailed)
COLUMNS = 4

person = auth.require("library.search")
PROFILE = person.name  # the signed-in person's own ranking weights and preferences
st.title("Expression library")
try:
    library = services.library()
    stats = library.stats()
except StoreError as error:
    store_unavailable(error, "The library cannot be opened.")

st.caption(
    f"{stats['items']} expressions · {stats['characters']} characters · {stats['feedback']} feedback signals. "
    "Search by words, a reference face, or both; filters are hard constraints."
)


def add_section() -> None:
    if not person.may("library.add"):
        return
    with st.expander("Add expressions", expanded=stats["items"] == 0):
        with st.form("add-images", border=False):
            pictures = uploads.image_uploads("Face images")
            add_images = st.form_submit_button("Add images")
        if add_images and pictures:
            with tempfile.TemporaryDirectory(prefix="facecast-") as folder:
                paths = []
                for upload in pictures:
                    path = Path(folder) / Path(upload.name).name
                    path.write_bytes(upload.getvalue())
                    paths.append(path)
                report = library.add_images(paths, source="upload")
            show_ingest(report)
        analyses = library.store.analyses.newest(limit=200)
        analyses = analyses[analyses["faces_found"]] if not analyses.empty else analyses
        if analyses.empty:
            st.caption("Analysed clips' key-moment faces can be added here once a clip is analysed.")
            return
        labels = {int(r.id): f"{r.name} (analysis {r.id})" for r in analyses.itertuples()}
        with st.form("add-analysis", border=False):
            chosen = st.selectbox("Key-moment faces of an analysed clip", options=list(labels), format_func=labels.get)
            add_clip = st.form_submit_button("Add from clip")
        if add_clip and chosen is not None:
            show_ingest(library.add_from_analysis(chosen))


def show_ingest(report) -> None:
    name = lambda path: Path(path).name if "/" in str(path) else str(path)  # noqa: E731
    if report.added:
        st.success(f"Added {len(report.added)} expression(s).", icon=":material/add_photo_alternate:")
    if report.duplicates:
        st.info(
            f"{len(report.duplicates)} already in the library: " + ", ".join(name(p) for p, _ in report.duplicates[:8])
        )
    for path, why in report.failed:
        st.error(f"**{name(path)}** was not added: {why}", icon=":material/broken_image:")
    for note in report.notes:
        st.caption(note)
    if report.added:
        st.session_state.pop("library.results", None)


try:
    add_section()
except TRITON_ERRORS as error:
    triton_down(error)
except (LibraryError, StoreError) as error:
    st.error(str(error))

if library.stats()["items"] == 0:
    st.info(
        "The library is empty: add face images or an analysed clip's faces above, or run "
        "`python -m training.data.demo --library` for the demo library.",
        icon=":material/photo_library:",
    )
    st.stop()

with st.form("search", border=False):
    words, picture = st.columns([3, 2])
    text = words.text_input("Describe the expression", placeholder="e.g. a furious cartoon villain")
    with picture:
        reference = uploads.image_uploader("…or give a reference face")
    emotion_col, style_col, top_col = st.columns(3)
    emotion = emotion_col.selectbox("Emotion", ["any", *EMOTIONS])
    style = style_col.selectbox("Style", ["any", *STYLES], format_func=lambda s: s.replace("_", " "))
    top_k = top_col.slider("Results", 4, 48, 12, step=4)
    searched = st.form_submit_button("Search", type="primary")

search_messages = st.container(key="search-errors")  # always there, so a warning never moves the results
if searched:
    query = Query(text=text.strip() or None, image=reference.getvalue() if reference else None)
    filters = Filters(emotion=None if emotion == "any" else emotion, style=None if style == "any" else style)
    if query.text is None and query.image is None:
        # Filters alone are a search too: they become the query's emotion / style.
        query = Query(emotion=filters.emotion, style=filters.style)
    try:
        st.session_state["library.results"] = library.search(query, top_k=top_k, filters=filters, profile=PROFILE)
        st.session_state["library.reference"] = reference.getvalue() if reference else None
    except TRITON_ERRORS as error:
        triton_down(error, "The search needs the model server, which is not available.")
    except (LibraryError, EmbeddingQueryError) as error:
        search_messages.warning(f"**The search cannot run.** {error}", icon=":material/search_off:")
        st.session_state.pop("library.results", None)


def give_feedback(kind: str, item_id: int) -> None:
    results = st.session_state["library.results"]
    try:
        if kind == "use":
            library.record_selection(PROFILE, results, [item_id])
            message = f"Using expression {item_id}: the ranking learns from this choice."
        else:
            library.record_rating(PROFILE, results, item_id, 5.0 if kind == "up" else 1.0)
            message = f"Thanks: expression {item_id} rated {'up' if kind == 'up' else 'down'}; the ranking adapts."
        st.session_state["library.feedback"] = message
    except (FeedbackError, StoreError) as error:
        st.session_state["library.feedback"] = f"Feedback not stored: {error}"


def remove_item(item_id: int) -> None:
    """Ops and admins only (the button is not shown to others, and this checks again)."""
    if not person.may("library.remove"):
        st.session_state["library.feedback"] = "Removing items needs the ops role."
        return
    try:
        removed, _ = library.remove([item_id])
        st.session_state["library.feedback"] = (
            f"Removed expression {item_id} from the library."
            if removed
            else (f"Expression {item_id} was already gone.")
        )
        st.session_state.pop("library.results", None)
    except StoreError as error:
        st.session_state["library.feedback"] = f"Not removed: {error}"


results = st.session_state.get("library.results")
if results is None:
    st.stop()
# Every part below sits in a container of its own, present on every run: a message or a note more or less then never
# moves the result cards to other positions (where Streamlit could leave an earlier search's card standing).
with st.container(key="search-messages"):
    if message := st.session_state.pop("library.feedback", None):
        st.toast(message, icon=":material/thumb_up:")
        st.success(message)
    for note in results.notes:
        st.caption(note)
if not results.results:
    st.info("No expression matches: loosen the filters or describe it differently.")
    st.stop()

st.subheader(f"{len(results.results)} results for the {results.query_type} query")
st.caption(
    "Score R = Σ weight × φ over the ranking criteria; each card shows the φ values that put it there. "
    "Current weights: " + ", ".join(f"{t.replace('_', ' ')} {w:.2f}" for t, w in results.weights.items())
)
rows = [results.results[i : i + COLUMNS] for i in range(0, len(results.results), COLUMNS)]
for row in rows:
    for cell, result in zip(st.columns(COLUMNS), row):
        with cell.container(border=True, key=f"result-{result.rank}"):
            thumbnail = library.store.library.thumbnail(result.id)
            if thumbnail:
                st.image(thumbnail, width=96)
            st.markdown(
                f"**#{result.rank}** · score **{result.score:.3f}**  \n{result.emotion} · "
                f"{result.style.replace('_', ' ')}" + (f" · {result.character}" if result.character else "")
            )
            st.caption(Path(result.source_path).name if "/" in result.source_path else result.source_path)
            for term, phi in result.phi.items():  # the reasons: φ per criterion (weights in the caption above)
                st.progress(min(1.0, max(0.0, phi)), text=f"{term.replace('_', ' ')} {phi:.2f}")
            up, down = st.columns(2)
            up.button(
                "Good",
                icon=":material/thumb_up:",
                key=f"up-{results.query_id}-{result.id}",
                help="A good match: rank things like it higher",
                on_click=give_feedback,
                args=("up", result.id),
            )
            down.button(
                "Poor",
                icon=":material/thumb_down:",
                key=f"down-{results.query_id}-{result.id}",
                help="A poor match: rank things like it lower",
                on_click=give_feedback,
                args=("down", result.id),
            )
            st.button(
                "Use this",
                icon=":material/check:",
                key=f"use-{results.query_id}-{result.id}",
                type="primary",
                width="stretch",
                on_click=give_feedback,
                args=("use", result.id),
            )
            if person.may("library.remove"):
                st.button(
                    "Remove",
                    icon=":material/delete:",
                    key=f"remove-{results.query_id}-{result.id}",
                    help="Delete this expression from the library (ops)",
                    on_click=remove_item,
                    args=(result.id,),
                )
