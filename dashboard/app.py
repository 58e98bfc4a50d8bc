"""The unmask review dashboard (Streamlit entry point).

Run it with ``unmask dashboard --workspace DIR`` (or ``streamlit run app.py -- --workspace
DIR``); it reads the workspace's runs and review store and never trains.
"""
import streamlit as st

from dashboard import ui

st.set_page_config(page_title="unmask review", page_icon=":material/search:", layout="wide")

PAGES = [
    st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("pages/finance.py", title="Finance alert queue", icon=":material/credit_card:",
            url_path="finance"),
    st.Page("pages/medical.py", title="CT review", icon=":material/radiology:", url_path="ct"),
    st.Page("pages/driving.py", title="Drive-log replay", icon=":material/directions_car:",
            url_path="drive"),
]

ws = ui.workspace()
ui.login(ws)              # before any page: shows only the login page (and stops) when needed
page = st.navigation(PAGES)
st.sidebar.caption(f"Workspace: {ui.plain(ws)}")
page.run()
