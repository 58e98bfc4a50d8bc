"""bench.demo_load times the demo from nothing: importing it must not load the dashboard's
data stack (pandas, pyarrow) before the clock starts; the port it serves on is free."""
import socket
import subprocess
import sys
from pathlib import Path

from core.net import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_demo_timer_loads_no_data_stack():
    probe = ("import sys, bench.demo_load; "
             "print(sorted(m for m in ('pandas', 'pyarrow', 'streamlit', 'torch') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]"


def test_the_free_port_can_be_served_on():
    port = free_port()
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        assert server.getsockname()[1] == port
