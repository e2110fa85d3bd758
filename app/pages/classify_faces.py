"""Classify faces: upload character faces (or pick demo ones) and see emotion, style and action parameters."""

from __future__ import annotations

from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from app import services
from app.components import auth, uploads
from app.components.banners import triton_down
from facecast.classify import ClassifiedImage, classify_images
from facecast.media.images import ImageDecodeError, fit_square, load_rgb
from facecast.serving.errors import InferenceFailed, ModelUnavailable, TritonUnavailable
from facecast.store import StoreError
from facecast.vocab import EMOTIONS

MAX_FILES = 64

auth.require("faces.classify")
st.title("Classify faces")
st.caption(
    "Emotion, art style and action parameters (mouth, eye, brow, cheek) of character faces, "
    "predicted by the `expression_encoder` network served by Triton."
)

recognizer = services.recognizer()
try:
    face_size = recognizer.face_size
except (TritonUnavailable, ModelUnavailable) as error:
    triton_down(error)


def demo_faces() -> list[Path]:
    folder = services.settings().demo_dir / "faces"
    return sorted(folder.glob("*.png")) if folder.is_dir() else []


with st.form("faces", border=False):
    pictures = uploads.image_uploads(
        "Face images", help=f"Up to {MAX_FILES} images; each is fitted to {face_size}×{face_size} px."
    )
    demos = demo_faces()
    chosen_demos = []
    if demos:
        chosen_demos = st.multiselect(
            "…or try demo faces", options=demos, format_func=lambda p: p.stem, placeholder="Pick demo faces"
        )
    submitted = st.form_submit_button("Classify", type="primary")

if submitted:
    sources = [(upload.name, upload.getvalue()) for upload in pictures]
    sources += [(path.name, path.read_bytes()) for path in chosen_demos]
    if not sources:
        st.info("Upload a face image or pick a demo face first.")
        st.stop()
    if len(sources) > MAX_FILES:
        st.warning(f"{len(sources)} images given; classifying the first {MAX_FILES}.")
        sources = sources[:MAX_FILES]
    try:
        with st.spinner(f"Classifying {len(sources)} image(s) on Triton…"):
            st.session_state["results"] = classify_images(sources, recognizer)
            st.session_state["source_bytes"] = [data for _, data in sources]
    except (TritonUnavailable, ModelUnavailable, InferenceFailed) as error:
        triton_down(error, "Classification failed.")
    try:
        services.store().classifications.add(
            r.as_record() for r in st.session_state["results"] if r.prediction is not None
        )
    except StoreError as error:
        st.warning(f"Results shown but not saved: {error}")


def attention_overlay(face: np.ndarray, attention: np.ndarray) -> Image.Image:
    """The face with the model's attention map laid over it in red: where the prediction came from."""
    heat = Image.fromarray((255 * attention / max(attention.max(), 1e-6)).astype(np.uint8))
    heat = np.asarray(heat.resize(face.shape[:2][::-1], Image.Resampling.BILINEAR), dtype=np.float32) / 255
    tinted = face.astype(np.float32) * (1 - 0.6 * heat[..., None]) + np.array([255, 0, 0]) * 0.6 * heat[..., None]
    return Image.fromarray(tinted.clip(0, 255).astype(np.uint8))


def show_result(result: ClassifiedImage, data: bytes) -> None:
    if result.prediction is None:
        st.error(result.error, icon=":material/broken_image:")
        return
    prediction = result.prediction
    try:
        face = fit_square(load_rgb(data), 192)
    except ImageDecodeError:
        face = None
    picture, numbers, chart = st.columns([1, 1, 2])
    if face is not None:
        picture.image(face, caption=result.source, width=160)
        picture.image(attention_overlay(face, prediction.attention), caption="where the model looked", width=160)
    numbers.metric("Emotion", prediction.emotion)
    numbers.caption(f"{prediction.confidence:.0%} confident")
    numbers.metric("Style", prediction.style.replace("_", " "))
    numbers.caption(f"{prediction.style_probs[prediction.style]:.0%} confident")
    numbers.dataframe(
        pd.DataFrame(
            {
                "parameter": list(prediction.action_params),
                "value": [round(v, 2) for v in prediction.action_params.values()],
            }
        ),
        hide_index=True,
        width="stretch",
    )
    probabilities = pd.DataFrame({"emotion": EMOTIONS, "probability": [prediction.emotion_probs[e] for e in EMOTIONS]})
    chart.altair_chart(
        alt.Chart(probabilities)
        .mark_bar()
        .encode(
            x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
            y=alt.Y("emotion:N", sort=list(EMOTIONS), title=None, axis=alt.Axis(labelOverlap=False)),
            color=alt.condition(alt.datum.emotion == prediction.emotion, alt.value("#e4572e"), alt.value("#9aa5b1")),
            tooltip=["emotion", alt.Tooltip("probability:Q", format=".1%")],
        )
        .properties(height=230),
        width="stretch",
    )


results: list[ClassifiedImage] = st.session_state.get("results", [])
if results:
    ok = sum(r.prediction is not None for r in results)
    st.subheader(f"{ok} of {len(results)} image(s) classified")
    for result, data in zip(results, st.session_state.get("source_bytes", [])):
        with st.container(border=True):
            show_result(result, data)
    st.download_button(
        "Download results (JSON)",
        data=pd.Series([r.as_dict() for r in results]).to_json(orient="values", indent=2),
        file_name="facecast-classifications.json",
        mime="application/json",
    )
