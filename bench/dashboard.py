"""Dashboard speed: the finance alert queue over 10 k, 1 M and 10 M transactions, in Chromium.

Builds a workspace with a synthetic finance run of each size in docs/runs.md's layout
(no model needed: scores, reasons and SHAP values are drawn with exact additivity), serves
it with `unmask dashboard`, and drives Debian's Chromium through Playwright:

* first render of the alert queue (fresh server, first visit: nothing cached), a repeat
  visit in a new tab, and an uncached server-side query (all 1 M rows instead of alerts);
* opening an alert's detail (click a row -> transaction, SHAP waterfall, customer history
  chart and the disposition form rendered), for several alerts, each uncached;
* server side, the customer history both ways: the full scan of the input and scores, and
  the read through the run's history index (its one-off build timed apart); the run's
  whole-file statistics (queue bounds, drift test), computed once per run into its cache/
  folder (that one-off timed apart too) and read from there.

Baselines in the same run: a two-line Streamlit app measured just before each size (the
floor any page pays on this machine under its current load), the smallest run (does the queue's cost grow with the
run? each size is divided by it), and the naive approach a dashboard could take
(pandas reads all of scores.parquet, filters, sorts and slices one page).

With ``--against OLD_CHECKOUT`` it is an A/B instead: the old checkout's dashboard and this
one's served in turn over the same runs, interleaved with the two-line app, a fresh server
and browser per visit (for a shared machine, where only ratios measured side by side mean
anything); written to bench/results/dashboard-ab.json.

Usage:
    UNMASK_NUM_THREADS=1 .venv/bin/python -m bench.dashboard [--rows 10000 1000000 10000000] [--out bench/results/dashboard.json]
    UNMASK_NUM_THREADS=1 .venv/bin/python -m bench.dashboard --runs-dir DIR --against OLD_CHECKOUT [--visits 5]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from core.io import write_text_atomic
from core.net import free_port

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def _dashboard_test_helper(name: str):
    """``tests/dashboard/<name>.py``, loaded by path. tests/ is deliberately not a package:
    pytest imports its files by basename (the tests say ``from dashboard_fixtures import``),
    and an ``__init__.py`` there would break that, so the benchmark loads the file itself."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "dashboard" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# the synthetic-run writer and the Playwright helpers the dashboard's own tests use
fixtures = _dashboard_test_helper("dashboard_fixtures")
ui = _dashboard_test_helper("dashboard_browser")

# queue first render against the two-line app's, in the same run; detail open in seconds
TARGETS = {"queue_first_render_vs_floor": 1.5, "detail_open_s": 0.5}


def timed(fn, repeat: int = 3) -> float:
    """Best of ``repeat`` wall times (s) of ``fn()``."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def server_side(run_dir: Path) -> dict:
    """The plain functions behind the queue and the detail, timed without the browser."""
    import pandas as pd
    import pyarrow.parquet as pq

    from core.runs import load_manifest
    from dashboard import drift_data
    from dashboard import finance_data as fd

    scores = run_dir / "scores.parquet"
    manifest = load_manifest(run_dir)
    # the run's whole-file statistics (queue bounds, the drift test), computed once per run
    # into its cache/ folder (the first visit of the run does it); timed apart, like the
    # indexes below, and found built by the browser phase
    start = time.perf_counter()
    fd.run_bounds(scores)
    drift_data.run_drift(scores, manifest["summary"])
    stats_build = time.perf_counter() - start
    page, _ = fd.queue_page(scores, fd.QueueQuery())
    top = fd.transaction(scores, page.iloc[0]["transaction_id"])

    def naive_page():  # what a dashboard without server-side paging would do
        frame = pd.read_parquet(scores)
        frame[frame["is_alert"]].sort_values("rank").iloc[:50]

    data, model = manifest["inputs"][0], manifest.get("model")
    full_scan = timed(lambda: fd.customer_history(data, scores, top["customer_id"], top["timestamp"],
                                                  model_dir=model, use_index=False))
    # the run's history index, built once per run (the dashboard starts it on the first
    # detail open, in the background); the browser phase below finds it built
    start = time.perf_counter()
    index = fd.build_history_index(data, scores, model)
    index_build = time.perf_counter() - start
    # the reviewed transactions' alert flags (the queue's KPIs, on every page rerun): 20
    # reviews, alerts and others, by scan and through the run's id index
    tail = pq.ParquetFile(scores)  # sorted by rank: its last row group holds no alerts
    tail = tail.read_row_group(tail.num_row_groups - 1, columns=["transaction_id"])
    reviewed = tail["transaction_id"].to_pylist()[:10] + page["transaction_id"].head(10).tolist()
    flags_scan = timed(lambda: fd.alert_flags(scores, reviewed, use_index=False))
    start = time.perf_counter()
    fd.build_alert_flags_index(scores)
    flags_build = time.perf_counter() - start
    return {
        "alert_flags_20_full_scan_s": flags_scan,
        "alert_flags_index_build_s": flags_build,
        "alert_flags_20_s": timed(lambda: fd.alert_flags(scores, reviewed)),
        "customer_history_full_scan_s": full_scan,
        "history_index_build_s": index_build,
        "history_index_mb": sum(f.stat().st_size for f in index.rglob("*") if f.is_file()) / 1e6,
        "run_stats_build_s": stats_build,
        "run_stats_cached_s": timed(lambda: (fd.run_bounds(scores),
                                             drift_data.run_drift(scores, manifest["summary"]))),
        "bounds_s": timed(lambda: fd.queue_bounds(scores)),
        "drift_test_s": timed(lambda: drift_data.drift_test(
            scores, manifest["summary"]["calibration_reference"]), repeat=1),
        "alerts_page_s": timed(lambda: fd.queue_page(scores, fd.QueueQuery())),
        "all_rows_page_100_s": timed(lambda: fd.queue_page(
            scores, fd.QueueQuery(alerts_only=False, page=100))),
        "sorted_by_amount_page_s": timed(lambda: fd.queue_page(
            scores, fd.QueueQuery(alerts_only=False, sort="amount", descending=True))),
        "transaction_s": timed(lambda: fd.transaction(scores, top["transaction_id"])),
        "transaction_with_rank_s": timed(lambda: fd.transaction(scores, top["transaction_id"],
                                                                int(top["rank"]))),
        "explanation_s": timed(lambda: fd.explanation(run_dir / "explanations.parquet",
                                                      top["transaction_id"])),
        "customer_history_s": timed(lambda: fd.customer_history(
            data, scores, top["customer_id"], top["timestamp"], model_dir=model)),
        "naive_pandas_page_s": timed(naive_page, repeat=2),
    }


def in_browser(ws: Path, run_dir: Path, log_dir: Path, n_details: int = 5,
               code: Path | None = None, extras: bool = True) -> dict:
    """Queue first render and detail opening, measured in Chromium.

    Args:
        code: the checkout whose dashboard is served (default: this one).
        extras: also time the all-rows query and a repeat visit.
    """
    from playwright.sync_api import expect, sync_playwright

    from dashboard import finance_data as fd

    ids = fd.queue_page(run_dir / "scores.parquet", fd.QueueQuery())[0]["transaction_id"].tolist()
    # the server runs `python -m dashboard.launch`, which puts its working directory first on
    # sys.path: it must be the served checkout, or another checkout's dashboard/ is imported
    env = None if code is None else {**os.environ, "PYTHONPATH": str(code)}
    out = {}
    with ui.running_dashboard(ws, log_dir, env=env, cwd=code) as url, sync_playwright() as p:
        browser = ui.launch(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            start = time.perf_counter()
            page.goto(url + "/finance")
            ui.settle(page, "matching transactions")
            expect(page.locator('[data-testid="stDataFrame"]')).to_be_visible()
            out["queue_first_render_s"] = time.perf_counter() - start

            details = []
            for row in range(n_details):
                start = time.perf_counter()
                ui.click_table_row(page, row)
                ui.settle(page, f"Transaction {ids[row]}")
                expect(page.locator('[data-testid="stVegaLiteChart"]')).to_have_count(2)
                details.append(time.perf_counter() - start)
            out["detail_open_s"] = {"median": statistics.median(details), "max": max(details),
                                    "all": details}
            page.screenshot(path=str(log_dir / "detail.png"))
            if not extras:
                return out

            start = time.perf_counter()
            page.get_by_text("Alerts only").click()
            ui.settle(page, f"{fd.queue_bounds(run_dir / 'scores.parquet')['n_rows']:,}** matching"
                   .replace("**", ""))
            out["all_rows_query_s"] = time.perf_counter() - start

            second = browser.new_page(viewport={"width": 1400, "height": 1000})
            start = time.perf_counter()
            second.goto(url + "/finance")
            ui.settle(second, "matching transactions")
            out["queue_repeat_visit_s"] = time.perf_counter() - start
        finally:
            browser.close()
    return out


FLOOR_APP = """import streamlit as st
st.title("floor")
st.write("ready")
if st.button("rerun"):
    st.write("clicked")
"""


# The two-line app served by stock Streamlit, except for the dashboard server's socket fix
# (Nagle's algorithm off: dashboard.launch.serve_without_delayed_writes), for a floor that
# does not pay the ~40 ms per small script the dashboard no longer pays
WITHOUT_NAGLE = ("import sys; from dashboard.launch import serve_without_delayed_writes; "
                 "serve_without_delayed_writes(); from streamlit.web import cli; "
                 "sys.exit(cli.main(prog_name='streamlit'))")


def streamlit_floor(tmp: Path, without_nagle: bool = False, first_only: bool = False) -> dict:
    """Baseline: first and repeat render of a two-line Streamlit app on this machine, now
    (what any Streamlit page costs before it reads data), and a click on its one button
    until the rerun's text shows (what any interaction costs: the floor of a detail open).

    Args:
        without_nagle: serve it with the dashboard server's socket fix (``WITHOUT_NAGLE``).
        first_only: measure the first render alone (the A/B reads nothing else; the repeat
            visit and the click cost seconds per visit on a loaded machine).
    """
    import subprocess

    from playwright.sync_api import sync_playwright

    from dashboard.serve import wait_ready

    script = tmp / "floor_app.py"
    script.write_text(FLOOR_APP)
    port = free_port()
    streamlit = ["-c", WITHOUT_NAGLE] if without_nagle else ["-m", "streamlit"]
    process = subprocess.Popen(
        [sys.executable, *streamlit, "run", str(script), "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.address", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)} if without_nagle else None)
    out = {}
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, process)
        with sync_playwright() as p:
            browser = ui.launch(p)
            try:
                keys = ("first_render_s",) if first_only else ("first_render_s", "repeat_visit_s")
                for key in keys:
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    start = time.perf_counter()
                    page.goto(url)
                    ui.settle(page, "ready")
                    out[key] = time.perf_counter() - start
                    if key == "repeat_visit_s":
                        start = time.perf_counter()
                        page.get_by_role("button", name="rerun").click()
                        ui.settle(page, "clicked")
                        out["click_rerun_s"] = time.perf_counter() - start
                    page.close()
            finally:
                browser.close()
    finally:
        process.terminate()
        process.wait(timeout=20)
    return out


def reused_run(ws: Path, rows: int) -> Path | None:
    """The run a previous ``--runs-dir`` call built in ``ws`` (None: build it)."""
    run_dir = ws / "runs" / "finance" / f"bench-{rows}"
    return run_dir if (run_dir / "manifest.json").is_file() else None


def finance_run(ws: Path, rows: int, reuse: bool) -> tuple[Path, bool]:
    """The synthetic run of ``rows`` transactions in ``ws`` (1 % alerts), and whether a
    previous call's run was reused (only with ``reuse``)."""
    run_dir = reused_run(ws, rows) if reuse else None
    if run_dir is not None:
        return run_dir, True
    return fixtures.write_finance_run(ws, n=rows, alert_rate=0.01, run_id=f"bench-{rows}"), False


def build_run_caches(run_dir: Path) -> None:
    """What the run's first visits build into its ``cache/`` folder: the whole-file
    statistics (queue bounds, drift test) and the history and alert-flag indexes."""
    from core.runs import load_manifest
    from dashboard import drift_data
    from dashboard import finance_data as fd

    scores, manifest = run_dir / "scores.parquet", load_manifest(run_dir)
    fd.run_bounds(scores)
    drift_data.run_drift(scores, manifest["summary"])
    fd.build_history_index(manifest["inputs"][0], scores, manifest.get("model"))
    fd.build_alert_flags_index(scores)


def _header(benchmark: str, argv) -> dict:
    return {"benchmark": benchmark, "command": "python -m bench.dashboard " + " ".join(argv or sys.argv[1:])}


def compare(old_code: Path, runs_dir: Path, rows: list[int], visits: int, tmp: Path) -> dict:
    """Old checkout against this one, interleaved: per size, ``visits`` rounds of the two-line
    app, the old code's queue and this code's (a fresh server and browser each, the order
    reversed every other round, so a load that drifts weighs on both alike)."""
    out = {}
    for rows_n in sorted(rows):
        ws = runs_dir / f"{rows_n:_d}"
        run_dir, _ = finance_run(ws, rows_n, reuse=True)
        build_run_caches(run_dir)     # the run's statistics and indexes, built once
        visits_of = {"floor": [], "floor_without_nagle": [], "old": [], "new": []}
        loads = []
        for visit in range(visits):
            codes = [("old", old_code), ("new", ROOT)]
            for label, code in codes if visit % 2 == 0 else codes[::-1]:
                loads.append(os.getloadavg()[0])
                visits_of[label].append(in_browser(ws, run_dir, tmp / f"{rows_n}-{label}-{visit}",
                                                   code=code, extras=False))
            visits_of["floor"].append(streamlit_floor(tmp, first_only=True)["first_render_s"])
            visits_of["floor_without_nagle"].append(
                streamlit_floor(tmp, without_nagle=True, first_only=True)["first_render_s"])
        out[f"{rows_n:_d}"] = {"load_average": [min(loads), max(loads)], "visits": visits_of,
                               "summary": compared(visits_of)}
        print(json.dumps({f"{rows_n:_d}": out[f"{rows_n:_d}"]["summary"]}, indent=2), flush=True)
    return out


def compared(visits_of: dict) -> dict:
    """Medians per code: queue first render (s and against the floor's median), detail open
    (all opens, the session's first, the later ones)."""
    floor = statistics.median(visits_of["floor"])
    fixed_floor = statistics.median(visits_of["floor_without_nagle"])
    out = {"floor_first_render_s": floor, "floor_without_nagle_first_render_s": fixed_floor}
    for label in ("old", "new"):
        runs = visits_of[label]
        first = statistics.median(r["queue_first_render_s"] for r in runs)
        opens = [r["detail_open_s"]["all"] for r in runs]
        out[label] = {"queue_first_render_s": first, "queue_first_render_vs_floor": first / floor,
                      "queue_first_render_vs_floor_without_nagle": first / fixed_floor,
                      "detail_open_median_s": statistics.median(x for o in opens for x in o),
                      "detail_first_open_median_s": statistics.median(o[0] for o in opens),
                      "detail_later_open_median_s": statistics.median(x for o in opens for x in o[1:])}
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 1_000_000, 10_000_000],
                        help="run sizes, smallest first (the others are divided by it)")
    parser.add_argument("--out", default=None, help="default: bench/results/dashboard.json "
                                                    "(dashboard-ab.json with --against)")
    parser.add_argument("--runs-dir", default=None,
                        help="build the synthetic runs here once and reuse them on later calls "
                             "(for development: the run's cached indexes and stats are reused "
                             "too, so their build times read ~0); default: a fresh temporary "
                             "folder, removed after each size")
    parser.add_argument("--against", default=None, metavar="OLD_CHECKOUT",
                        help="A/B instead: serve OLD_CHECKOUT's dashboard and this one in turn "
                             "(needs --runs-dir); writes bench/results/dashboard-ab.json")
    parser.add_argument("--visits", type=int, default=5, help="A/B rounds per size")
    args = parser.parse_args(argv)
    os.environ.setdefault("UNMASK_NUM_THREADS", "1")
    if args.against:
        return main_compare(args, argv)

    result = {**_header("dashboard", argv),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_average_at_start": os.getloadavg()},
              "threads": os.environ["UNMASK_NUM_THREADS"], "targets": TARGETS, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="unmask-bench-dashboard-") as tmp:
        for rows in sorted(args.rows):
            label = f"{rows:_d}"
            ws = Path(args.runs_dir or tmp) / label
            # the floor beside each size: on a shared machine the load moves between them
            floor = streamlit_floor(Path(tmp))
            fixed_floor = streamlit_floor(Path(tmp), without_nagle=True, first_only=True)
            print(json.dumps({"streamlit_floor": floor, "without_nagle": fixed_floor}), flush=True)
            start = time.perf_counter()
            run_dir, reused = finance_run(ws, rows, reuse=bool(args.runs_dir))
            entry = {"n_transactions": rows, "n_alerts": int(round(rows * 0.01)),
                     "reused_run": reused, "write_synthetic_run_s": time.perf_counter() - start,
                     "scores_parquet_mb": (run_dir / "scores.parquet").stat().st_size / 1e6,
                     "load_average_before": os.getloadavg(), "streamlit_floor": floor,
                     "streamlit_floor_without_nagle": fixed_floor}
            entry["server_side"] = server_side(run_dir)
            entry["browser"] = in_browser(ws, run_dir, Path(tmp) / f"{label}-logs")
            result["runs"][label] = entry
            print(json.dumps({label: entry}, indent=2), flush=True)
            if not args.runs_dir:
                shutil.rmtree(ws)  # the 10 M run holds about 1 GB
    result["summary"] = summarise(result)
    result["machine"]["load_average_at_end"] = os.getloadavg()
    write_text_atomic(args.out or RESULTS / "dashboard.json", json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2))
    return result


def main_compare(args, argv) -> dict:
    if not args.runs_dir:
        raise SystemExit("--against needs --runs-dir (the runs are built once and shared)")
    result = {**_header("dashboard A/B", argv),
              "old_code": str(Path(args.against).resolve()), "new_code": str(ROOT),
              "machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()},
              "threads": os.environ["UNMASK_NUM_THREADS"]}
    with tempfile.TemporaryDirectory(prefix="unmask-bench-dashboard-ab-") as tmp:
        result["runs"] = compare(Path(args.against), Path(args.runs_dir), args.rows,
                                 args.visits, Path(tmp))
    result["machine"]["load_average_at_end"] = os.getloadavg()
    write_text_atomic(args.out or RESULTS / "dashboard-ab.json", json.dumps(result, indent=2) + "\n")
    return result


def summarise(result: dict) -> dict:
    """Per size: queue first render against the floor, detail open, and both against the
    smallest run (flat = about 1x)."""
    runs = list(result["runs"].values())
    smallest = runs[0]["browser"]
    out = {}
    for entry in runs:
        browser, server = entry["browser"], entry["server_side"]
        floor = entry["streamlit_floor"]["first_render_s"]
        out[entry["n_transactions"]] = {
            "queue_first_render_vs_floor": browser["queue_first_render_s"] / floor,
            "queue_first_render_vs_floor_without_nagle": browser["queue_first_render_s"]
            / entry["streamlit_floor_without_nagle"]["first_render_s"],
            "detail_open_median_s": browser["detail_open_s"]["median"],
            # the session's first open also fetches the charts' and the form's scripts
            "detail_first_open_s": browser["detail_open_s"]["all"][0],
            "detail_open_vs_floor_click": browser["detail_open_s"]["median"] / entry["streamlit_floor"]["click_rerun_s"],
            "queue_first_render_vs_smallest": browser["queue_first_render_s"] / smallest["queue_first_render_s"],
            "detail_open_vs_smallest": browser["detail_open_s"]["median"] / smallest["detail_open_s"]["median"],
            "meets_targets": {
                "queue_first_render": browser["queue_first_render_s"] / floor <= TARGETS["queue_first_render_vs_floor"],
                "detail_open": browser["detail_open_s"]["median"] < TARGETS["detail_open_s"]},
            "naive_vs_server_side_page": server["naive_pandas_page_s"] / server["alerts_page_s"],
            "history_s": server["customer_history_s"],
            "history_vs_smallest": server["customer_history_s"] / runs[0]["server_side"]["customer_history_s"],
            "history_full_scan_vs_index": server["customer_history_full_scan_s"] / server["customer_history_s"],
            "alert_flags_s": server["alert_flags_20_s"],
            "alert_flags_vs_smallest": server["alert_flags_20_s"] / runs[0]["server_side"]["alert_flags_20_s"]}
    return out


if __name__ == "__main__":
    main()
