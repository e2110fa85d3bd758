"""facecast web app: `streamlit run app/main.py` (the README's first command does this for you)."""

import streamlit as st

st.set_page_config(page_title="facecast", page_icon=":material/theater_comedy:", layout="wide")

pages = {
    "Artists": [st.Page("pages/classify_faces.py", title="Classify faces", icon=":material/face:", default=True)],
    "Ops": [st.Page("pages/triton_status.py", title="Triton status", icon=":material/monitor_heart:")],
}
st.navigation(pages).run()
