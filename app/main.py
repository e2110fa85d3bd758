"""facecast web app: `streamlit run app/main.py` (the README's first command does this for you).

Each page is listed only for people whose roles allow it (facecast.access; without sign-in, the local user sees all),
so a page someone may not use is not reachable at all, not just hidden."""

from pathlib import Path

import streamlit as st

from app.components import auth

# A local icon: a `:material/…:` page icon makes the browser fetch the tab icon from Google's font CDN, which an
# offline studio cannot reach (the page icons in the sidebar use Streamlit's bundled font and need nothing).
st.set_page_config(
    page_title="facecast", page_icon=str(Path(__file__).parent / "static" / "facecast.svg"), layout="wide"
)

# (section, page file, title, icon, the action the page needs)
PAGES = [
    ("Marketing", "pages/analyze_clips.py", "Analyze clips", ":material/movie:", "clips.analyse"),
    ("Marketing", "pages/compare_cuts.py", "Compare cuts", ":material/compare:", "clips.compare"),
    ("Marketing", "pages/history.py", "History", ":material/history:", "clips.history"),
    ("Marketing", "pages/calibrate.py", "Calibrate", ":material/model_training:", "engagement.calibrate"),
    ("Artists", "pages/expression_library.py", "Expression library", ":material/photo_library:", "library.search"),
    ("Artists", "pages/classify_faces.py", "Classify faces", ":material/face:", "faces.classify"),
    ("Artists", "pages/style_mapping.py", "Style mapping", ":material/palette:", "faces.map"),
    ("Ops", "pages/triton_status.py", "Triton status", ":material/monitor_heart:", "ops.status"),
]

person = auth.identity(main=True)
allowed = [page for page in PAGES if person.may(page[4])]
pages: dict[str, list] = {}
for index, (section, path, title, icon, _) in enumerate(allowed):
    pages.setdefault(section, []).append(st.Page(path, title=title, icon=icon, default=index == 0))
auth.sidebar(person)
st.navigation(pages).run()
