"""`unmask demo` and `unmask dashboard`: orchestration, progress, errors, server command."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import dashboard.demo as demo_module
import dashboard.serve as serve_module
from core.cli import main
from core.errors import DataValidationError
from core.runs import list_runs
from dashboard_browser import unmask_command
from dashboard_fixtures import write_driving_run, write_finance_run


def test_streamlit_command(tmp_path):
    command = serve_module.streamlit_command(tmp_path / "ws", port=8642, host="127.0.0.1")
    assert command[:5] == [sys.executable, "-P", "-m", "dashboard.launch", "run"]
    assert command[5].endswith("dashboard/app.py")
    pairs = dict(zip(command[6::2], command[7::2]))
    assert pairs["--server.port"] == "8642" and pairs["--server.headless"] == "true"
    assert pairs["--browser.gatherUsageStats"] == "false"
    assert pairs["--server.address"] == "127.0.0.1"
    assert command[-3:] == ["--", "--workspace", str((tmp_path / "ws").resolve())]


def test_the_server_never_imports_a_dashboard_folder_from_the_working_directory(tmp_path):
    # a user who runs `unmask dashboard` inside a project of their own with a dashboard/ folder
    (tmp_path / "dashboard").mkdir()
    (tmp_path / "dashboard" / "__init__.py").write_text("raise SystemExit('decoy imported')\n")
    interpreter = serve_module.streamlit_command(tmp_path / "ws")[:2]
    found = subprocess.run([*interpreter, "-c", "import dashboard; print(dashboard.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()).parent == Path(serve_module.__file__).parent


class FakeServer:
    """Stands in for the Streamlit process."""

    calls = []

    def __init__(self, command, env=None, **kwargs):
        FakeServer.calls.append((command, env))
        self.returncode = 0

    def wait(self, timeout=None):
        return 0


def test_dashboard_command_serves_without_training(monkeypatch, tmp_path):
    monkeypatch.setattr(serve_module.subprocess, "Popen", FakeServer)
    FakeServer.calls.clear()
    ws = tmp_path / "not-yet"
    main(["dashboard", "--workspace", str(ws), "--port", "8765"])
    (command, env), = FakeServer.calls
    assert "--server.port" in command and "8765" in command
    assert env["UNMASK_WORKSPACE"] == str(ws.resolve())
    assert not ws.exists()  # serving never creates, simulates or trains anything


def _server_address(command) -> str:
    return command[command.index("--server.address") + 1]


def test_dashboard_listens_on_loopback_by_default_and_says_where(monkeypatch, tmp_path, capsys):
    """Streamlit alone listens on every interface: the command must pin 127.0.0.1."""
    monkeypatch.setattr(serve_module.subprocess, "Popen", FakeServer)
    FakeServer.calls.clear()
    main(["dashboard", "--workspace", str(tmp_path / "ws"), "--port", "8765"])
    (command, _), = FakeServer.calls
    assert _server_address(command) == "127.0.0.1"
    captured = capsys.readouterr()
    assert "at http://127.0.0.1:8765 (no login" in captured.out
    assert "warning" not in captured.err
    assert serve_module.streamlit_command(tmp_path, 8501)[-5:-3] == ["--server.address",
                                                                     "127.0.0.1"]


def test_every_interface_without_login_warns_in_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(serve_module.subprocess, "Popen", FakeServer)
    monkeypatch.setattr(serve_module.socket, "gethostname", lambda: "reviewbox")
    FakeServer.calls.clear()
    main(["dashboard", "--workspace", str(tmp_path / "ws"), "--port", "8765", "--host", "0.0.0.0"])
    (command, _), = FakeServer.calls
    assert _server_address(command) == "0.0.0.0"
    captured = capsys.readouterr()
    assert "at http://reviewbox:8765 (no login" in captured.out
    warning, = captured.err.strip().splitlines()
    assert warning.startswith("warning: 0.0.0.0 is reachable from other machines and the "
                              "dashboard has no login")


def test_a_password_turns_login_on_and_silences_the_warning(monkeypatch, tmp_path, capsys):
    from click.testing import CliRunner

    from core.cli import cli

    ws = tmp_path / "ws"
    result = CliRunner().invoke(cli, ["dashboard", "--workspace", str(ws), "--set-password",
                                      "ana"], input="correct horse\ncorrect horse\n")
    assert result.exit_code == 0, result.output
    stored = (ws / "dashboard-passwords.json")
    assert "correct horse" not in stored.read_text() and oct(stored.stat().st_mode)[-3:] == "600"
    monkeypatch.setattr(serve_module.subprocess, "Popen", FakeServer)
    FakeServer.calls.clear()
    main(["dashboard", "--workspace", str(ws), "--host", "0.0.0.0", "--port", "8765"])
    captured = capsys.readouterr()
    assert "(login: password" in captured.out and "warning" not in captured.err


def test_demo_serve_listens_on_loopback_unless_told(monkeypatch, tmp_path):
    monkeypatch.setattr(demo_module, "run_in_child", build_here)
    monkeypatch.setattr(demo_module, "builder", fake_builders(set()))
    monkeypatch.setattr(serve_module.subprocess, "Popen", FakeServer)
    FakeServer.calls.clear()
    main(["demo", "--workspace", str(tmp_path / "ws"), "--vertical", "finance", "--serve"])
    main(["demo", "--workspace", str(tmp_path / "ws"), "--vertical", "finance", "--serve",
          "--host", "192.0.2.7"])
    assert [_server_address(command) for command, _ in FakeServer.calls] == ["127.0.0.1",
                                                                            "192.0.2.7"]


def build_here(vertical, workspace, size, seed, on_tick=None):
    """``run_in_child`` without the child, for builders defined in this test process."""
    return demo_module.builder(vertical)(workspace, size=size, seed=seed)


def fake_builders(failing: set):
    def make(vertical):
        def build(workspace, size, seed):
            if vertical in failing:
                raise RuntimeError(f"{vertical} simulator exploded")
            writer = {"finance": write_finance_run, "driving": write_driving_run}[vertical]
            return writer(workspace, run_id=f"{vertical}-{size}-{seed}")
        return build
    return make


def test_demo_builds_each_vertical_with_progress(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(demo_module, "run_in_child", build_here)
    monkeypatch.setattr(demo_module, "builder", fake_builders(set()))
    ws = tmp_path / "ws"
    main(["demo", "--workspace", str(ws), "--size", "tiny", "--seed", "3",
          "--vertical", "finance", "--vertical", "driving"])
    out = capsys.readouterr().out
    assert "[1/2] finance" in out and "[2/2] driving" in out
    assert "finance: 400 transactions, 20 alerts" in out and "driving: 40 frames, 5 alerts" in out
    assert f"unmask dashboard --workspace {ws}" in out
    assert [m["run_id"] for m in list_runs(ws, "finance")] == ["finance-tiny-3"]


def test_demo_reports_a_failing_vertical_and_builds_the_others(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(demo_module, "run_in_child", build_here)
    monkeypatch.setattr(demo_module, "builder", fake_builders({"medical"}))
    monkeypatch.setattr(serve_module.subprocess, "Popen", FakeServer)
    FakeServer.calls.clear()
    ws = tmp_path / "ws"
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--workspace", str(ws), "--serve"])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert "medical: FAILED" in captured.out and "medical simulator exploded" in captured.out
    assert "Error: demo failed for medical" in captured.err
    assert list_runs(ws, "finance") and list_runs(ws, "driving")  # the others were built
    assert FakeServer.calls == []  # a failed demo is not served


def test_demo_then_serve(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(demo_module, "run_in_child", build_here)
    monkeypatch.setattr(demo_module, "builder", fake_builders(set()))
    monkeypatch.setattr(serve_module.subprocess, "Popen", FakeServer)
    FakeServer.calls.clear()
    main(["demo", "--workspace", str(tmp_path / "ws"), "--vertical", "finance", "--serve",
          "--port", "8777"])
    (command, env), = FakeServer.calls
    assert "8777" in command and env["UNMASK_WORKSPACE"] == str((tmp_path / "ws").resolve())


SLOW_BUILDER = """
import os, sys, time
import torch  # loaded in the child only
from core.runtime import progress_bar
from dashboard_fixtures import write_finance_run

def build(workspace, size, seed):
    for _ in progress_bar(range(4), desc="train", show=False):
        time.sleep(0.7)
    return write_finance_run(workspace, run_id=f"child-{os.getpid()}")
"""


@pytest.fixture
def child_builder(monkeypatch, tmp_path):
    """finance's demo builder replaced by a module a spawned child can import."""
    (tmp_path / "slow_demo_builder.py").write_text(SLOW_BUILDER)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(demo_module, "builder_ref", lambda vertical: "slow_demo_builder:build")


def test_each_vertical_builds_in_a_child_and_off_a_terminal_prints_progress(
        child_builder, monkeypatch, tmp_path, capsys):
    import dashboard.cli as cli_module

    monkeypatch.setattr(cli_module, "PROGRESS_EVERY_S", 0.5)
    ws = tmp_path / "ws"
    main(["demo", "--workspace", str(ws), "--vertical", "finance"])
    record = json.loads(demo_module.build_log(ws, "finance").read_text())
    assert record["pid"] != os.getpid()
    assert [m["run_id"] for m in list_runs(ws, "finance")] == [f"child-{record['pid']}"]
    ticks = [line for line in capsys.readouterr().err.splitlines()
             if line.startswith("demo: finance 1/1 train ")]
    assert len(ticks) >= 2 and ticks[-1].endswith("s"), ticks


def test_the_parent_never_loads_torch(child_builder, tmp_path):
    script = (f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
              "import dashboard.demo as d\n"
              "d.builder_ref = lambda vertical: 'slow_demo_builder:build'\n"
              f"[r] = d.build_workspace({str(tmp_path / 'ws')!r}, size='tiny', verticals=['finance'])\n"
              "assert r.error is None, r.details\n"
              "print('torch' in sys.modules)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_the_child_never_runs_the_parents_main_script(child_builder, tmp_path):
    # A script without a __main__ guard (as Streamlit runs the app, as AppTest does): a
    # 'spawn' child would import it again as __mp_main__ and build a second time.
    script = tmp_path / "unguarded.py"
    script.write_text(
        f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
        f"open({str(tmp_path / 'ran.txt')!r}, 'a').write('ran\\n')\n"
        "import dashboard.demo as d\n"
        "d.builder_ref = lambda vertical: 'slow_demo_builder:build'\n"
        f"[r] = d.build_workspace({str(tmp_path / 'ws')!r}, size='tiny', verticals=['finance'])\n"
        "assert r.error is None, r.details\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ran.txt").read_text() == "ran\n"


def test_a_failing_child_reports_its_error_and_traceback(monkeypatch, tmp_path):
    (tmp_path / "broken_demo_builder.py").write_text(
        "def build(workspace, size, seed):\n    raise RuntimeError('phantom exploded')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(demo_module, "builder_ref", lambda vertical: "broken_demo_builder:build")
    [result] = demo_module.build_workspace(tmp_path / "ws", size="tiny", verticals=["medical"])
    assert result.error == "RuntimeError: phantom exploded"
    assert "broken_demo_builder.py" in result.details


def test_demo_validates_size_and_vertical(tmp_path):
    with pytest.raises(DataValidationError, match="demo size must be one of"):
        demo_module.build_workspace(tmp_path, size="huge")
    with pytest.raises(DataValidationError, match="unknown vertical 'space'"):
        demo_module.builder("space")


@pytest.fixture
def busy_port():
    """A port something already listens on (as a first ``unmask dashboard`` would)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_a_busy_port_is_refused_before_serving(busy_port, tmp_path):
    result = subprocess.run(unmask_command() + ["dashboard", "--workspace", str(tmp_path / "ws"),
                                                "--port", str(busy_port)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    line, = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: port {busy_port} on 127.0.0.1 is already in use")
    assert "--port" in line
    assert "Serving" not in result.stdout


def test_the_busy_port_message_names_a_free_one(busy_port, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(serve_module.subprocess, "Popen", FakeServer)
    FakeServer.calls.clear()
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--workspace", str(tmp_path / "ws"), "--serve", "--port", str(busy_port)])
    assert exit_info.value.code == 2 and FakeServer.calls == []
    line, = capsys.readouterr().err.strip().splitlines()
    free = int(line.split("--port ")[1].split()[0])
    assert free > busy_port and not serve_module.port_in_use("127.0.0.1", free)
    assert not (tmp_path / "ws").exists()       # refused before minutes of building


@pytest.mark.parametrize("argv, suggestion", [
    (["finanse"], "Did you mean 'finance'?"),
    (["dashbord"], "Did you mean 'dashboard'?"),
    (["finance", "scroe"], "Did you mean 'score'?"),
])
def test_a_mistyped_command_gets_a_suggestion(argv, suggestion, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"No such command {argv[-1]!r}. {suggestion}" in err


def test_demo_says_how_to_open_it_as_the_user_typed_unmask(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(demo_module, "run_in_child", build_here)
    monkeypatch.setattr(demo_module, "builder", fake_builders(set()))
    monkeypatch.setattr(sys, "argv", [".venv/bin/unmask", "demo"])  # a fresh shell, no activate
    main(["demo", "--workspace", str(tmp_path / "ws"), "--size", "tiny", "--vertical", "finance"])
    assert (f"Open it with: .venv/bin/unmask dashboard --workspace {tmp_path / 'ws'}"
            in capsys.readouterr().out)
