"""Style mapping: carry a face's expression into another art style (realistic, cartoon, anime, stylized 3D) with
the served `style_mapper`, push mouth / eye / brow / cheek within the target style's range, and keep the result in
the expression library."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from app import services
from app.components import auth, uploads
from app.components.banners import TRITON_DOWN, store_unavailable, triton_down
from facecast.library import LibraryError
from facecast.mapping import MappingInputError, MappingResult, NotAFaceError, StyleMapper, save_to_library
from facecast.serving.errors import InferenceFailed, ModelUnavailable, TritonUnavailable
from facecast.store import StoreError
from facecast.vocab import ACTION_PARAMS, STYLE_PARAM_BOUNDS, STYLES

TRITON_ERRORS = (TritonUnavailable, ModelUnavailable, InferenceFailed)
LIBRARY_CHOICES = 500  # newest items offered in the picker
FROM_LIBRARY, FROM_UPLOAD = "A library item", "An uploaded face"
FROM_TEST_FACE = "A test face with its true drawings"


@st.cache_resource
def style_mapper() -> StyleMapper:
    return StyleMapper.for_urls(services.triton_urls())


def pretty(style: str) -> str:
    return style.replace("_", " ")


def server_down(error: Exception, what: str = TRITON_DOWN) -> NoReturn:
    triton_down(error, what, forget=style_mapper.clear)


auth.require("faces.map")
st.title("Style mapping")
st.caption(
    "Carry a face's expression into another art style with the `style_mapper` network served by Triton. "
    "Each style keeps mouth, eye, brow and cheek inside its own range, so the expression is neither "
    "exaggerated nor dead in the new style; values outside it are clamped and the page says so."
)

mapper = style_mapper()
try:
    size = mapper.input_size
except TRITON_ERRORS as error:
    server_down(error)


# ---- the source face -----------------------------------------------------------------------------------------------


def library_source() -> tuple[bytes, str, str, str | None]:
    """(picture bytes, name, origin for the saved item, character) of a library item the user picks."""
    try:
        library = services.library()
        items = library.store.library.items(limit=LIBRARY_CHOICES)
    except StoreError as error:
        store_unavailable(error, "The library cannot be opened.")
    if items.empty:
        st.info(
            "The library is empty: upload a face instead, or add faces on the Expression library page.",
            icon=":material/photo_library:",
        )
        st.stop()
    rows = {int(row.id): row for row in items.itertuples()}
    labels = {
        item_id: f"#{item_id} · {row.emotion} · {pretty(row.style)} · {Path(str(row.source_path)).name}"
        for item_id, row in rows.items()
    }
    chosen = st.selectbox(
        "Library item",
        options=list(labels),
        format_func=labels.get,
        help=f"The newest {LIBRARY_CHOICES} items of the expression library.",
    )
    row = rows[chosen]
    # The item's own file when it is still there (full resolution), otherwise the face the library keeps.
    data = None
    path = Path(str(row.source_path))
    if path.is_file():
        try:
            data = path.read_bytes()
        except OSError:
            data = None
    if data is None:
        data = library.store.library.thumbnail(chosen)
    if data is None:
        st.error(f"Library item {chosen} is gone (removed meanwhile); pick another.", icon=":material/database:")
        st.stop()
    character = row.character if isinstance(row.character, str) and row.character else None
    return data, f"library item {chosen}", f"item {chosen}", character


def test_face_sets() -> list[Path]:
    """Held-out faces drawn in every style (`make demo` writes them): each style's drawing is the ground truth."""
    folder = services.settings().demo_dir / "style_sets"
    return sorted(p for p in folder.glob("set-*") if p.is_dir()) if folder.is_dir() else []


def test_face_source(sets: list[Path]) -> tuple[bytes, str, str, None, dict[str, np.ndarray]]:
    """(picture bytes, name, origin, character, the true drawing per style) of a test face the user picks."""
    chosen_set, chosen_style = st.columns(2)
    folder = chosen_set.selectbox("Test face", sets, format_func=lambda p: p.name)
    style = chosen_style.selectbox("Drawn in", STYLES, format_func=pretty)
    truths = {s: np.asarray(Image.open(folder / f"{s}.png").convert("RGB")) for s in STYLES}
    data = (folder / f"{style}.png").read_bytes()
    return data, f"{folder.name} ({pretty(style)})", f"test face {folder.name}", None, truths


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * np.log10(255.0**2 / max(mse, 1e-10))


def upload_source() -> tuple[bytes, str, str, None]:
    upload = uploads.image_uploader(
        "Face picture", help="A character's face, or a frame with one in it: the face detector finds it."
    )
    if upload is None:
        st.info("Upload a face picture, or pick a library item.", icon=":material/upload:")
        st.stop()
    return upload.getvalue(), upload.name, f"upload {upload.name}", None


test_sets = test_face_sets()
kind = st.radio(
    "Start from",
    [FROM_LIBRARY, FROM_UPLOAD] + ([FROM_TEST_FACE] if test_sets else []),
    horizontal=True,
    help=f"{FROM_TEST_FACE}: a face the mapper never trained on, drawn by the generator in all four styles in the "
    "same scene, so each mapping can be seen beside the drawing it should match.",
)
truths: dict[str, np.ndarray] = {}
if kind == FROM_LIBRARY:
    data, name, origin, character = library_source()
    assume_face = True  # library items are faces already (the library stores them as face crops)
elif kind == FROM_TEST_FACE:
    data, name, origin, character, truths = test_face_source(test_sets)
    assume_face = True  # the whole test picture is the face crop the mapper was measured on
else:
    data, name, origin, character = upload_source()
    assume_face = st.checkbox(
        "Map even if no face is found",
        help="The face detector refuses pictures it finds no face in; tick this to map the "
        "whole picture anyway (for faces it misses).",
    )

source_key = hashlib.sha256(data).hexdigest()[:16] + ("-assumed" if assume_face else "")
if st.session_state.get("mapping.source") != source_key:
    try:
        with st.spinner("Mapping into all four styles on Triton…"):
            everything = mapper.map_to_all_styles(data, assume_face=assume_face, name=name)
    except NotAFaceError as error:
        st.error(
            f'**No face found.** {error}. If it is a face, tick "Map even if no face is found".',
            icon=":material/face_retouching_off:",
        )
        st.stop()
    except MappingInputError as error:
        st.error(f"**This picture cannot be mapped.** {error}", icon=":material/broken_image:")
        st.stop()
    except TRITON_ERRORS as error:
        server_down(error, "Mapping needs the model server, which is not available.")
    st.session_state["mapping.source"] = source_key
    st.session_state["mapping.all"] = everything
    st.session_state.pop("mapping.result", None)
    st.session_state.pop("mapping.saved", None)
everything: dict[str, MappingResult] = st.session_state["mapping.all"]
first = everything[STYLES[0]]

# ---- the face in every style ----------------------------------------------------------------------------------------

st.subheader("In all four styles")
st.caption(
    f"The source reads as **{pretty(first.source_style)}** ({first.source_style_probs[first.source_style]:.0%}) "
    f"showing **{first.emotion}** ({first.emotion_probs[first.emotion]:.0%}); {first.source.description}."
)
columns = st.columns(len(STYLES) + 1)
columns[0].image(first.source.face, caption=f"source: {name}", width=160)
for column, style in zip(columns[1:], STYLES):
    result = everything[style]
    column.image(result.mapped, caption=pretty(style), width=160)
    column.caption(" · ".join(f"{p} {v:.2f}" for p, v in result.applied_params.items()))
if truths:
    columns = st.columns(len(STYLES) + 1)
    columns[0].markdown("**True drawing**  \nthe same face drawn in each style by the generator")
    for column, style in zip(columns[1:], STYLES):
        truth = truths[style]
        mapped = everything[style].mapped
        column.image(truth, caption=f"true {pretty(style)}", width=160)
        if truth.shape == mapped.shape:
            column.caption(f"mapping vs truth: PSNR {psnr(mapped, truth):.1f} dB")

# ---- one style, with the parameters pushed --------------------------------------------------------------------------

st.subheader("Map into one style")
others = [s for s in STYLES if s != first.source_style]
target = st.selectbox("Target style", STYLES, index=STYLES.index(others[0]), format_func=pretty)
bounds = STYLE_PARAM_BOUNDS[target]
st.caption(
    f"Sliders run over {pretty(target)}'s range and start at what the model read from the source "
    "(moved into the range where it was outside)."
)
defaults = {
    p: round(min(bounds[p][1], max(bounds[p][0], everything[target].applied_params[p])), 2) for p in ACTION_PARAMS
}
values = {}
for column, param in zip(st.columns(len(ACTION_PARAMS)), ACTION_PARAMS):
    low, high = bounds[param]
    values[param] = column.slider(
        param,
        min_value=float(low),
        max_value=float(high),
        value=float(defaults[param]),
        step=0.01,
        key=f"mapping.{param}.{target}.{source_key}",
    )

if st.button("Map", type="primary", icon=":material/auto_fix_high:"):
    overrides = {p: v for p, v in values.items() if abs(v - defaults[p]) > 1e-9}  # untouched: the source's own
    try:
        with st.spinner(f"Mapping into {pretty(target)}…"):
            st.session_state["mapping.result"] = mapper.map_expression(first.source, target, overrides)
        st.session_state.pop("mapping.saved", None)
    except MappingInputError as error:
        st.error(f"**The mapping cannot run.** {error}", icon=":material/error:")
        st.stop()
    except TRITON_ERRORS as error:
        server_down(error, "Mapping needs the model server, which is not available.")

result: MappingResult | None = st.session_state.get("mapping.result")
if result is None or result.target_style != target:
    st.stop()

with st.container(border=True, key="mapping-result"):
    picture, numbers = st.columns([1, 2])
    picture.image(result.mapped, caption=f"{pretty(result.source_style)} → {pretty(result.target_style)}", width=256)
    numbers.dataframe(
        pd.DataFrame(
            {
                "parameter": list(ACTION_PARAMS),
                "read from the source": [round(result.source_params[p], 3) for p in ACTION_PARAMS],
                "requested": [f"{result.overrides[p]:.3f}" if p in result.overrides else "—" for p in ACTION_PARAMS],
                "applied": [round(result.applied_params[p], 3) for p in ACTION_PARAMS],
                f"{pretty(result.target_style)} range": [
                    f"{bounds[p][0]:.2f}–{bounds[p][1]:.2f}" for p in ACTION_PARAMS
                ],
            }
        ),
        hide_index=True,
        width="stretch",
    )
    for notice in result.notices:
        numbers.warning(notice.message, icon=":material/straighten:")
    if not result.notices:
        numbers.caption("Every parameter was inside the style's range: nothing was clamped.")
    numbers.download_button(
        "Download PNG", data=result.png(), mime="image/png", file_name=f"{Path(name).stem}-{result.target_style}.png"
    )
    if numbers.button("Save to library", icon=":material/add_photo_alternate:"):
        try:
            report = save_to_library(services.library(), result, origin, character=character)
        except TRITON_ERRORS as error:
            server_down(error, "Saving needs the model server (the library embeds every face), which is not available.")
        except (LibraryError, StoreError, OSError) as error:
            st.session_state["mapping.saved"] = ("error", f"Not saved: {error}")
        else:
            if report.added:
                item_id = report.added[0][0]
                st.session_state["mapping.saved"] = (
                    "success",
                    f"Saved as library item {item_id} ({pretty(result.target_style)}, mapped from {origin}).",
                )
            elif report.duplicates:
                st.session_state["mapping.saved"] = (
                    "info",
                    f"This mapped face is already in the library (item {report.duplicates[0][1]}).",
                )
            else:
                st.session_state["mapping.saved"] = (
                    "error",
                    "Not saved: " + "; ".join(why for _, why in report.failed),
                )
    saved = st.session_state.get("mapping.saved")
    if saved:
        getattr(numbers, saved[0])(saved[1])
