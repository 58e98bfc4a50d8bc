"""The unmask review dashboard (Streamlit entry point).

Run it with ``unmask dashboard --workspace DIR`` (or ``streamlit run app.py -- --workspace
DIR``); it reads the workspace's runs and review store and never trains.
"""
import streamlit as st

from dashboard import ui

st.set_page_config(page_title="unmask review", page_icon=":material/search:", layout="wide")
# Streamlit's default top padding (6rem) would push a CT slice below the fold at 1440 x 900.
st.html("<style>.stMainBlockContainer { padding-top: 2rem; }</style>")

# The page files live in views/, not pages/: on a fresh server Streamlit runs a file of a
# `pages/` folder beside this script directly when the first request names it (its old
# multipage mode), skipping this script and so the login below.
PAGES = [
    st.Page("views/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("views/finance.py", title="Finance alert queue", icon=":material/credit_card:",
            url_path="finance"),
    st.Page("views/medical.py", title="CT review", icon=":material/radiology:", url_path="ct"),
    st.Page("views/driving.py", title="Drive-log replay", icon=":material/directions_car:",
            url_path="drive"),
]

ws = ui.workspace()
ui.login(ws, [p.url_path for p in PAGES if p.url_path])   # only the login page until logged in
page = st.navigation(PAGES)
st.sidebar.caption(f"Workspace: {ui.plain(ws)}")
page.run()
