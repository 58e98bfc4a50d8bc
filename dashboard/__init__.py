"""unmask dashboard: the Streamlit review app and the `unmask demo` main job."""
