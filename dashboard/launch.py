"""The dashboard's server process: Streamlit's own command line (``python -m dashboard.launch
run app.py ...`` takes ``streamlit run``'s arguments), importing the pages' modules while the
server waits for its first visitor.

Streamlit imports nothing of an app before a browser connects, so the first visitor would
wait for pandas, pyarrow, DuckDB, Altair, scipy and the verticals to import: 0.7-1.7 s on a
busy 2-core machine, more than a bare Streamlit page takes to render.
"""
from __future__ import annotations

import importlib
import sys
import threading
import time

# What the pages import, heaviest first; each failure is left to the page that needs it.
PRELOAD = ("pandas", "pyarrow.parquet", "duckdb", "altair", "scipy.stats", "dashboard.ui",
           "dashboard.plots", "dashboard.export_data", "finance.reasons", "finance.spec",
           "medical.spec", "driving.spec")


def _runtime_started(timeout: float = 60.0) -> bool:
    """Wait until Streamlit's runtime exists: ``st.cache_data`` functions defined before it
    would fall back to a private in-memory cache."""
    from streamlit import runtime

    deadline = time.monotonic() + timeout
    while not runtime.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)  # polling interval; the runtime starts within a second or two
    return True


def preload(modules=PRELOAD) -> None:
    """Import ``modules`` (in the server's background thread)."""
    if not _runtime_started():
        return
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - an extra not installed: its page says so itself
            pass


def main() -> None:
    from streamlit.web import cli  # lazy: the dashboard extra

    threading.Thread(target=preload, daemon=True, name="unmask-preload").start()
    sys.exit(cli.main(prog_name="streamlit"))


if __name__ == "__main__":
    main()
