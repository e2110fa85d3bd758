"""facecast web app: `streamlit run app/main.py` (the README's first command does this for you)."""

import streamlit as st

st.set_page_config(page_title="facecast", page_icon=":material/theater_comedy:", layout="wide")

pages = {
    "Marketing": [
        st.Page("pages/analyze_clips.py", title="Analyze clips", icon=":material/movie:", default=True),
        st.Page("pages/compare_cuts.py", title="Compare cuts", icon=":material/compare:"),
        st.Page("pages/history.py", title="History", icon=":material/history:"),
    ],
    "Artists": [
        st.Page("pages/expression_library.py", title="Expression library", icon=":material/photo_library:"),
        st.Page("pages/classify_faces.py", title="Classify faces", icon=":material/face:"),
        st.Page("pages/style_mapping.py", title="Style mapping", icon=":material/palette:"),
    ],
    "Ops": [st.Page("pages/triton_status.py", title="Triton status", icon=":material/monitor_heart:")],
}
st.navigation(pages).run()
