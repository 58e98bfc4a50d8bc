"""Streamlit helpers shared by the pages: the workspace, run pickers, empty states and
cached wrappers around the plain data functions (``*_data.py``)."""
from __future__ import annotations

import dataclasses
import re
import sys
import time
from pathlib import Path
from urllib.parse import quote

import streamlit as st

from core.errors import DataValidationError
from core.verticals import VerticalSpec, specs

from . import auth, drift_data, driving_data, finance_data, links, medical_data
from .workspace import (REVIEW_KIND, VERTICAL_TITLES, create_command, resolve_workspace,
                        review_store, runs)

EMPTY_HELP = {spec.name: spec.score_hint for spec in specs()}


def decision_labels(spec: VerticalSpec) -> dict[str, str]:
    """A vertical's review decisions -> button labels ("needs_information" -> "Needs
    information"), in the spec's order."""
    return {d: d.replace("_", " ").capitalize() for d in spec.decisions}


LOGIN_USER = "login_user"        # session state: the logged-in reviewer (no widget has this key)
LINK_STATE = "link_written"      # session state: the query parameters the pages last wrote
# Every ASCII punctuation mark may be backslash-escaped in (Streamlit's Commonmark) markdown.
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
URL_SAFE = ":/?#@!$&'*+,;=%~"   # kept as they are in a link's address; ( ) < > and spaces not


def workspace() -> Path:
    """The workspace given to ``unmask dashboard`` (``--workspace`` or ``$UNMASK_WORKSPACE``)."""
    return resolve_workspace(sys.argv[1:])


def plain(value) -> str:
    """``value`` as literal text inside markdown, on one line.

    Reviewer names, notes, ids and names read from files are user-written: rendered as
    markdown, ``![x](http://host/x.png)`` fetches a remote image and ``[click](http://evil)``
    plants a link. Escaped, they show exactly as typed.
    """
    return _PUNCTUATION.sub(r"\\\1", " ".join(str(value).split()))


def _oidc_reviewer() -> str:
    """The identity a logged-in OIDC user reviews under: e-mail, else name, else subject."""
    return str(st.user.get("email") or st.user.get("name") or st.user.get("sub"))


def _password_login(ws: Path, secrets: dict) -> None:
    """Form callback: log in when the user name and password match a stored hash."""
    state = st.session_state
    user, password = state.get("login_name", "").strip(), state.get("login_password", "")
    state["login_password"] = ""
    if auth.check_login(ws, secrets, user, password):
        state[LOGIN_USER] = user
    else:
        time.sleep(1.0)  # slows guessing from one session
        state["login_flash"] = "Wrong user name or password."


def _login_page(ws: Path, mode: str, secrets: dict) -> None:
    """The only page a visitor sees before logging in."""
    st.title("unmask review")
    if mode == "oidc":
        st.write("Log in to review the workspace's runs.")
        st.button("Log in", type="primary", on_click=st.login, key="login_oidc")
        return
    flash = st.session_state.pop("login_flash", None)
    if flash:
        st.error(flash)
    with st.form("login_form"):
        st.text_input("User", key="login_name")
        st.text_input("Password", type="password", key="login_password")
        st.form_submit_button("Log in", type="primary", on_click=_password_login,
                              args=(ws, secrets))


def _logout() -> None:
    st.session_state.pop(LOGIN_USER, None)


def login(ws: Path, url_paths=()) -> str | None:
    """The login gate, called by the app before its pages.

    Returns None when login is off (no password set, no ``[auth]`` in the secrets) and the
    logged-in user's name when on. A visitor who has not logged in sees only the login
    page: the app's pages are not even registered, whatever URL is asked for.

    Args:
        url_paths: the app pages' URL paths. The login page answers at each of them too, so
            a shared link (``/finance?run=...&tx=...``) shows the login page and, once
            logged in, the page and item it names (Streamlit knows a page by its path).
    """
    secrets = auth.streamlit_secrets()
    mode = auth.login_mode(ws, secrets)
    state = st.session_state
    if mode is None:
        state.pop(LOGIN_USER, None)
        return None
    if mode == "oidc":
        user = _oidc_reviewer() if st.user.is_logged_in else None
    else:
        user = state.get(LOGIN_USER)
        if user not in auth.password_users(ws, secrets):      # also: a password removed
            user = None
    if user is None:
        state.pop(LOGIN_USER, None)
        def show() -> None:
            _login_page(ws, mode, secrets)

        st.navigation([st.Page(show, title="Log in", url_path=path)
                       for path in ("login", *url_paths)], position="hidden").run()
        st.stop()
    state[LOGIN_USER] = user
    st.sidebar.caption(f"Logged in as {plain(user)}")
    st.sidebar.button("Log out", key="logout", on_click=st.logout if mode == "oidc" else _logout)
    return user


def empty_workspace(ws: Path) -> None:
    """How to create a workspace, shown instead of a page when it has no runs."""
    state = "does not exist" if not ws.exists() else "has no runs yet"
    st.info(f"The workspace {plain(ws)} {state}. Build a demo workspace (simulated card "
            "transactions, CT phantoms and drive logs; a few minutes on 2 cores) with:")
    st.code(create_command(ws), language="bash")
    st.markdown("then reload this page, or run `unmask demo --serve` to build and open it "
                "in one go.")


def empty_vertical(ws: Path, vertical: str) -> None:
    st.info(f"No {VERTICAL_TITLES[vertical]} runs in {plain(ws)} yet.")
    st.code(create_command(ws), language="bash")
    st.markdown(f"builds the demo runs; {EMPTY_HELP[vertical]}")


# --- links: the URL opens an item, and the page writes its selection back -------------

def link_param(vertical: str, name: str) -> str | None:
    """The URL's query parameter ``name`` when a visitor brought it (opened a link); None
    when absent or when it is what ``vertical``'s page wrote there itself."""
    value = st.query_params.get(name)
    written = st.session_state.setdefault(LINK_STATE, {})
    if value is None or written.get(f"{vertical}:{name}") == value:
        return None
    written[f"{vertical}:{name}"] = value
    return value


def link_apply(vertical: str, name: str, state_key: str, resolve) -> None:
    """Select what the URL's ``name`` names: ``state[state_key] = resolve(value)`` before
    the widget with that key is drawn. An id ``resolve`` refuses (``DataValidationError``)
    is shown as one plain warning and the page keeps its own choice."""
    value = link_param(vertical, name)
    if value is None:
        return
    try:
        st.session_state[state_key] = resolve(value)
    except DataValidationError as err:
        st.warning(plain(err))


def set_link(vertical: str, **params) -> None:
    """Write the page's selection into the URL (None removes a parameter), so the address
    bar can be copied; remembered so :func:`link_param` does not read it back as a link."""
    written = st.session_state.setdefault(LINK_STATE, {})
    for name, value in params.items():
        if value is None:
            written.pop(f"{vertical}:{name}", None)
            if name in st.query_params:
                del st.query_params[name]
            continue
        text = str(value)
        written[f"{vertical}:{name}"] = text
        if st.query_params.get(name) != text:
            st.query_params[name] = text


def share_link(what: str, where=None) -> None:
    """A link to what the page shows, its text the URL (select it, or copy the link), in the
    sidebar (or the sidebar container ``where``: a fragment writes into one it created on
    every run): the page's own space goes to the image.

    Markdown, not ``st.code``: the code box's highlighter is a 1.5 MB script (and a font)
    the browser would fetch and compile on the first item opened, ~0.3 s on a busy machine.
    """
    where = st.sidebar if where is None else where
    url = links.link(st.context.url, st.query_params.to_dict())
    where.caption(f"Link to this {what}")
    # the address as typed may hold ( ) < > or spaces, which would end a Markdown link
    where.markdown(f"[{plain(url)}]({quote(url, safe=URL_SAFE)})")


def pick_run(ws: Path, vertical: str) -> dict | None:
    """A sidebar choice among ``vertical``'s runs (newest first, or the URL's ``run``);
    None when there are none."""
    manifests = runs(ws, vertical)
    if not manifests:
        return None
    by_id = {m["run_id"]: m for m in manifests}
    link_apply(vertical, "run", f"{vertical}_run", lambda r: links.known_name(r, by_id, "run"))
    run_id = st.sidebar.selectbox(
        "Run", list(by_id), key=f"{vertical}_run",
        format_func=lambda r: f"{r} ({by_id[r].get('created', '')[:16]})")
    set_link(vertical, run=run_id)
    return by_id[run_id]


def output_path(manifest: dict, name: str, default: str) -> Path:
    """Absolute path of a run output (manifest ``outputs`` are relative to the run)."""
    return Path(manifest["path"]) / manifest.get("outputs", {}).get(name, default)


def open_run(title: str, vertical: str) -> tuple[Path, dict]:
    """Page preamble: title and run picker; shows how to create a run (and stops the page)
    when the workspace has none. Returns ``(workspace, manifest)``."""
    ws = workspace()
    st.title(title)
    manifest = pick_run(ws, vertical)
    if manifest is None:
        empty_vertical(ws, vertical)
        st.stop()
    return ws, manifest


def form_key(prefix: str, field: str, scope) -> str:
    """Session-state key of a review form's ``field`` (``decision``, ``note``) for one item:
    each item has its own widgets, so a note typed for one never shows on the next."""
    return f"{prefix}_{field}:{scope}"


def _record(ws: Path, vertical: str, run_id: str, item, scope, prefix: str, decisions: dict,
            on_recorded) -> None:
    """Form callback: append the review event. Callbacks run before the page script, so the
    page that follows already shows the new state (KPIs, tables). With login on, the
    reviewer is the logged-in user; otherwise the name typed in the form, remembered for
    every form while the page stays open."""
    state = st.session_state
    typed = state.get(f"{prefix}_reviewer", "").strip()
    if typed and not state.get(LOGIN_USER):
        state["reviewer_name"] = typed
    decision_key, note_key = form_key(prefix, "decision", scope), form_key(prefix, "note", scope)
    decision = state.get(decision_key) if len(decisions) > 1 else next(iter(decisions))
    if decision is None:  # nothing is preselected: a decision is always the reviewer's own
        state[f"{prefix}_flash"] = ("error", "Choose a decision before submitting.")
        return
    reviewer = state.get(LOGIN_USER) or typed
    if not reviewer:
        state[f"{prefix}_flash"] = ("error", "Enter your name as reviewer before submitting.")
        return
    item_id = item() if callable(item) else item
    review_store(ws).record(vertical, REVIEW_KIND[vertical], item_id, decision, reviewer,
                            note=state.get(note_key, ""), run_id=run_id)
    state[note_key] = ""                 # the form starts empty again (set, not deleted: the
    if decision_key in state:            # browser keeps a deleted widget's last value)
        state[decision_key] = None
    state[f"{prefix}_flash"] = ("success", f"Recorded {decisions[decision].lower()} for "
                                           f"{plain(item_id)} by {plain(reviewer)}.")
    if on_recorded is not None:
        on_recorded(item_id)


def review_form(ws: Path, vertical: str, run_id: str, item, *, prefix: str, title: str,
                submit: str, decisions: dict, scope=None, on_recorded=None) -> None:
    """A review form: decision (when there is a choice; none preselected), note and --
    without login -- reviewer, written to the workspace's review store against ``run_id``.

    Args:
        item: the item id, or a callable returning it at submit time.
        prefix: widget-key prefix (``form_key(prefix, "note", scope)``, ``<prefix>_reviewer``,
            ``<prefix>_form``).
        decisions: ``{decision: label}`` (one entry: no choice shown).
        scope: what the form's widgets belong to (default: ``item``); a new scope starts
            with an empty note and no decision.
        on_recorded: called with the item id after a review is recorded (e.g. to open the
            next item); runs in the callback, before the page script.
    """
    scope = item if scope is None else scope
    flash = st.session_state.pop(f"{prefix}_flash", None)
    if flash:
        (st.success if flash[0] == "success" else st.error)(flash[1])
    user = st.session_state.get(LOGIN_USER)
    with st.form(f"{prefix}_form", border=True):
        st.markdown(title)
        if len(decisions) > 1:
            st.radio("Decision", list(decisions), format_func=decisions.get, horizontal=True,
                     index=None, key=form_key(prefix, "decision", scope))
        st.text_area("Note", key=form_key(prefix, "note", scope), height=80)
        if user:
            st.caption(f"Recorded as {plain(user)}")
        else:
            st.text_input("Reviewer", value=st.session_state.get("reviewer_name", ""),
                          key=f"{prefix}_reviewer", placeholder="your name")
        st.form_submit_button(submit, type="primary", on_click=_record,
                              args=(ws, vertical, run_id, item, scope, prefix, decisions,
                                    on_recorded))


def drift_panel(manifest: dict) -> None:
    """The run's scores against its calibration reference: the test, the alert rate and
    the share above the calibration threshold, under a plain-words verdict."""
    try:
        report = run_drift(manifest)
    except DataValidationError as err:
        st.warning(plain(err))
        return
    if report is None:
        st.caption("This run carries no calibration reference (it was scored before runs "
                   "recorded one); score the data again to compare its scores with calibration.")
        return
    drift = report.drift
    with st.expander(f"Score drift: {report.verdict}", expanded=drift.drifted):
        cells = st.columns(4)
        cells[0].metric("p-value", f"{drift.p_value:.2g}" if drift.tested else "-",
                        help=f"chi-square two-sample test over {drift.bins} bins of the "
                             f"calibration scores; 'differ' below {drift.alpha:g}")
        cells[1].metric("Chi-square", f"{drift.statistic:.1f}" if drift.tested else "-",
                        help=f"{max(drift.bins - 1, 0)} degrees of freedom")
        cells[2].metric("Alert rate", f"{report.alert_rate:.2%}",
                        help=f"{report.n_alerts:,} alerts in {drift.n_scores:,} scores")
        cells[3].metric("Above calibration threshold", f"{drift.share_above_threshold:.2%}",
                        delta=f"nominal {drift.nominal_rate:.2%}", delta_color="off",
                        delta_arrow="off",    # a reference value, not a change: no up arrow
                        help="share of this run's scores above the calibration threshold; "
                             "the calibration expects its contamination there")
        st.caption(f"{drift.n_scores:,} scores of this run against {drift.n_reference:,} "
                   "held-out normal scores the model was calibrated on.")


def _mtime(path: Path) -> float:
    return path.stat().st_mtime if path.exists() else 0.0


# --- cached data (keyed by path and modification time, so a rewritten run is re-read) ---

@st.cache_data(show_spinner=False, max_entries=32)
def _finance_bounds(path: str, mtime: float) -> dict:
    return finance_data.run_bounds(path)


def finance_bounds(path: Path) -> dict:
    return _finance_bounds(str(path), _mtime(path))


@st.cache_data(show_spinner=False, max_entries=256)
def _finance_page(path: str, mtime: float, query: dict):
    return finance_data.queue_page(path, finance_data.QueueQuery(**query))


def finance_page(path: Path, query: finance_data.QueueQuery):
    return _finance_page(str(path), _mtime(path), dataclasses.asdict(query))


@st.cache_data(show_spinner=False, max_entries=64)
def _finance_detail(scores: str, explanations: str, transactions: str, model: str, transaction_id: str,
                    rank: int | None, mtime: float):
    row = finance_data.transaction(scores, transaction_id, rank)
    shap = finance_data.explanation(explanations, transaction_id)
    history = None
    if transactions and Path(transactions).is_file():
        history = finance_data.customer_history(transactions, scores, row["customer_id"],
                                                row["timestamp"], model_dir=model or None)
    return row, shap, history


def finance_detail(manifest: dict, transaction_id: str, rank: int | None = None):
    """``(row, shap, history)`` of one transaction (history None without the input file)."""
    scores = output_path(manifest, "scores", "scores.parquet")
    explanations = output_path(manifest, "explanations", "explanations.parquet")
    inputs = manifest.get("inputs") or [""]
    return _finance_detail(str(scores), str(explanations), str(inputs[0]), str(manifest.get("model") or ""),
                           str(transaction_id),
                           None if rank is None else int(rank), _mtime(scores))


@st.cache_data(show_spinner=False, max_entries=16)
def _medical_cases(run_dir: str, mtime: float):
    return medical_data.cases(run_dir)


def medical_cases(run_dir: Path):
    return _medical_cases(str(run_dir), _mtime(run_dir / "scores.parquet"))


@st.cache_resource(show_spinner="Reading volumes...", max_entries=4)
def _medical_case(run_dir: str, case: str, mtime: float):
    table = medical_data.cases(run_dir)
    return medical_data.load_case(run_dir, table[table["case"].astype(str) == case].iloc[0])


def medical_case(run_dir: Path, case: str) -> medical_data.CaseVolumes:
    return _medical_case(str(run_dir), str(case), _mtime(run_dir / "scores.parquet"))


@st.cache_data(show_spinner=False, max_entries=16)
def _driving_frames(run_dir: str, mtime: float):
    return driving_data.frames(run_dir), driving_data.logs(run_dir)


def driving_frames(run_dir: Path):
    """``(frames, logs)`` tables of a driving run."""
    return _driving_frames(str(run_dir), _mtime(run_dir / "frames.parquet"))


@st.cache_data(show_spinner=False, max_entries=16)
def _driving_shap(run_dir: str, log_id: str, mtime: float):
    return driving_data.region_shap(run_dir, log_id)


def driving_shap(run_dir: Path, log_id: str):
    return _driving_shap(str(run_dir), log_id, _mtime(run_dir / "region_shap.parquet"))


@st.cache_resource(show_spinner="Reading the log...", max_entries=4)
def _driving_layers(run_dir: str, inputs: tuple, run_id: str, log_id: str, mtime: float):
    manifest = {"inputs": list(inputs), "run_id": run_id}
    return driving_data.load_layers(run_dir, manifest, log_id)


def driving_layers(manifest: dict, log_id: str) -> driving_data.LogLayers:
    run_dir = Path(manifest["path"])
    return _driving_layers(str(run_dir), tuple(manifest.get("inputs", [])), manifest["run_id"],
                           log_id, _mtime(run_dir / "frames.parquet"))


@st.cache_data(show_spinner=False, max_entries=16)
def _run_drift(path: str, mtime: float, summary: dict):
    return drift_data.run_drift(path, summary)


def run_drift(manifest: dict) -> drift_data.DriftReport | None:
    """``drift_data.run_drift`` of a run (cached until its scores file changes)."""
    path = output_path(manifest, *drift_data.SCORE_OUTPUT[manifest["vertical"]])
    return _run_drift(str(path), _mtime(path), manifest.get("summary", {}))
