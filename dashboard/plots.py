"""Charts of the dashboard, as Altair (Vega-Lite) specifications.

Vega-Lite is Streamlit's built-in chart engine; its browser code is a fraction of
plotly.js's, which keeps opening an alert's detail under a second. Each function takes
plain data and returns an ``alt.Chart`` for ``st.altair_chart``, except the two charts
drawn on every alert opened, which return ``(data, spec)`` for ``st.vega_lite_chart``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

RED, BLUE, GRAY = "#d62728", "#1f77b4", "#7f7f7f"
FRAME_PICK = "frame_pick"   # the timeline's point selection: the frame a click seeks to


def _alt():
    import altair as alt

    return alt


def waterfall_steps(shap: pd.DataFrame, expected: float, top: int = 8) -> pd.DataFrame:
    """Bars of a SHAP waterfall: expected score, the ``top`` largest contributions, the rest
    as "other features", and the resulting score; ``start``/``end`` are the bar's ends.

    Args:
        shap: ``feature``, ``shap_value`` (and optionally ``value``) rows.
        expected: SHAP base value (the run's ``expected_score``).
        top: features shown individually.
    """
    shap = shap.reindex(shap["shap_value"].abs().sort_values(ascending=False).index)
    shown, rest = shap.iloc[:top], shap.iloc[top:]
    has_value = "value" in shap
    labels = [f"{f} = {v:.3g}" if has_value and pd.notna(v) else str(f)
              for f, v in zip(shown["feature"], shown["value"] if has_value else shown["feature"])]
    values = shown["shap_value"].astype(float).tolist()
    if len(rest):
        labels.append(f"{len(rest)} other features")
        values.append(float(rest["shap_value"].sum()))
    ends = expected + np.cumsum(values) if values else np.array([])
    starts = np.concatenate([[expected], ends[:-1]]) if values else np.array([])
    score = float(ends[-1]) if values else float(expected)
    rows = [{"step": "expected score", "start": 0.0, "end": float(expected), "kind": "total",
             "shap": float(expected)}]
    rows += [{"step": label, "start": float(s), "end": float(e),
              "kind": "raises" if v > 0 else "lowers", "shap": float(v)}
             for label, s, e, v in zip(labels, starts, ends, values)]
    rows.append({"step": "score", "start": 0.0, "end": score, "kind": "total", "shap": score})
    frame = pd.DataFrame(rows)
    frame["order"] = np.arange(len(frame))
    return frame


def shap_waterfall(shap: pd.DataFrame, expected: float, top: int = 8,
                   title: str = "Why this score (SHAP)") -> tuple[pd.DataFrame, dict]:
    """Horizontal waterfall from the expected score through the largest SHAP values.

    Returns ``(data, spec)`` for ``st.vega_lite_chart``: a plain Vega-Lite specification,
    not an Altair chart, as it is drawn on every alert opened and Altair's schema check
    costs more than the rest of the chart (0.07 of 0.1 s on a busy machine).
    """
    steps = waterfall_steps(shap, expected, top)
    return steps, {
        "title": title, "mark": {"type": "bar"},
        "height": 120 + 30 * len(steps),  # height includes title and axis (autosize fit)
        "encoding": {
            "y": {"field": "step", "type": "nominal", "sort": {"field": "order"}, "title": None,
                  "axis": {"labelLimit": 260, "labelOverlap": False}},
            "x": {"field": "start", "type": "quantitative", "title": "score"},
            "x2": {"field": "end"},
            "color": {"field": "kind", "type": "nominal", "legend": None,
                      "scale": {"domain": ["raises", "lowers", "total"],
                                "range": [RED, BLUE, GRAY]}},
            "tooltip": [{"field": "step", "type": "nominal"},
                        {"field": "shap", "type": "quantitative", "format": ".4f",
                         "title": "value"}]}}


def customer_history(history: pd.DataFrame, current_id: str,
                     title: str = "Customer's last 30 days") -> tuple[pd.DataFrame, dict]:
    """Amounts over time coloured by score (grey: not scored); the reviewed one as a star.
    Returns ``(data, spec)`` for ``st.vega_lite_chart`` (see :func:`shap_waterfall`)."""
    data = history.assign(this=history["transaction_id"].astype(str) == str(current_id))
    encoding = {
        "x": {"field": "timestamp", "type": "temporal", "title": None},
        "y": {"field": "amount", "type": "quantitative", "title": "amount"},
        "tooltip": [{"field": "transaction_id", "type": "nominal"},
                    {"field": "timestamp", "type": "temporal", "format": "%Y-%m-%d %H:%M"},
                    {"field": "amount", "type": "quantitative", "format": ",.2f"},
                    {"field": "score", "type": "quantitative", "format": ".4f"}]}
    points = {"mark": {"type": "circle", "size": 60, "opacity": 0.85}, "encoding": {
        **encoding, "color": {"condition": {"test": "isValid(datum.score)", "field": "score",
                                            "type": "quantitative",
                                            "scale": {"scheme": "orangered"}},
                              "value": "#bbbbbb"}}}
    star = {"transform": [{"filter": "datum.this"}], "encoding": encoding,
            "mark": {"type": "point", "shape": "diamond", "size": 260, "filled": True,
                     "color": RED, "stroke": "black"}}
    return data, {"title": title, "height": 300, "layer": [points, star]}


def region_bars(regions: pd.DataFrame, title: str = "Regions that raised the score (SHAP)"):
    """Horizontal bars of region SHAP values (red raises the score, blue lowers it)."""
    alt = _alt()
    data = regions.assign(effect=np.where(regions["shap_value"] > 0, "raises", "lowers"))
    return alt.Chart(data, title=title).mark_bar().encode(
        y=alt.Y("region:N", sort="-x", title=None,
                axis=alt.Axis(labelOverlap=False, labelLimit=360)),  # "ahead 12-20 m, left 0-8 m"
        x=alt.X("shap_value:Q", title="SHAP value of the case score"),
        color=alt.Color("effect:N", legend=None,
                        scale=alt.Scale(domain=["raises", "lowers"], range=[RED, BLUE])),
        tooltip=["region", alt.Tooltip("shap_value:Q", format=".4f")],
    ).properties(height=110 + 30 * len(data))  # height includes title and axis (autosize fit)


def anomaly_spans(log_frames: pd.DataFrame) -> pd.DataFrame:
    """``start``/``stop`` frame ranges where the simulator marks an anomaly."""
    if "anomaly" not in log_frames or not log_frames["anomaly"].notna().any():
        return pd.DataFrame(columns=["start", "stop"])
    flags = log_frames["anomaly"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    padded = np.concatenate([[False], flags, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    frames = log_frames["frame"].to_numpy()
    return pd.DataFrame({"start": frames[edges[::2]] - 0.5, "stop": frames[edges[1::2] - 1] + 0.5})


def surprise_timeline(log_frames: pd.DataFrame, current: int, title: str = "Surprise over the log"):
    """Score per frame; alerts as red dots, true anomalies shaded, the current frame marked.
    Every frame is a point of the ``FRAME_PICK`` selection (nearest to the click), so
    ``st.altair_chart(..., on_select="rerun")`` reports the clicked frame."""
    alt = _alt()
    data = log_frames[["frame", "score"]].assign(is_alert=log_frames["is_alert"].astype(bool))
    x = alt.X("frame:Q", title="frame (click to go there)",
              axis=alt.Axis(format="d", tickMinStep=1))        # frames are whole numbers
    line = alt.Chart(data).mark_line(color=BLUE).encode(x=x, y=alt.Y("score:Q", title="score"))
    pick = alt.selection_point(name=FRAME_PICK, fields=["frame"], on="click", nearest=True,
                               clear=False)
    points = alt.Chart(data).mark_circle(color=BLUE, size=30, opacity=0.35).encode(
        x=x, y="score:Q", tooltip=["frame", alt.Tooltip("score:Q", format=".4f")]
    ).add_params(pick)
    alerts = alt.Chart(data).transform_filter("datum.is_alert").mark_circle(
        color=RED, size=50).encode(x=x, y="score:Q", tooltip=["frame", "score"])
    now = alt.Chart(pd.DataFrame({"frame": [current]})).mark_rule(
        color="black", strokeDash=[4, 3]).encode(x="frame:Q")
    layers = [line, points, alerts, now]
    key = ["red dots: alerts", "dashed line: this frame"]
    spans = anomaly_spans(log_frames)
    if len(spans):
        layers.insert(0, alt.Chart(spans).mark_rect(color="orange", opacity=0.2).encode(
            x="start:Q", x2="stop:Q"))
        key.insert(1, "orange bands: true anomalies (simulator)")
    return alt.layer(*layers, title=alt.Title(title, subtitle=" · ".join(key))).properties(height=200)
