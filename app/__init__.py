"""The Streamlit UI. An installed package, so `streamlit run app/main.py` can import `app.services` from pages."""
