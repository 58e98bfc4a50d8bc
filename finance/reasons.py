"""Reason codes: the top SHAP features of an alert, in words a fraud analyst understands.

Each model feature belongs to a group (amount, time of day, burst, ...). The top reasons
are the features with the largest positive SHAP value, at most one per group, each with
the transaction's value, the customer's usual value and a sentence such as
"amount 9.4x this customer's 30-day average (412.00 vs 43.80)".
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

N_REASONS = 3


def _num(row, key):
    value = row.get(key)
    return float(value) if value is not None and not pd.isna(value) else math.nan


def _duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "unknown time"
    if seconds < 120:
        return f"{seconds:.0f} seconds"
    if seconds < 7200:
        return f"{seconds / 60:.0f} minutes"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86_400:.1f} days"


def _clock(hour: float) -> str:
    if math.isnan(hour):
        return "unknown"
    minutes = int(round(hour * 60)) % 1440
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _amount_vs(row, usual_key, whose):
    amount, usual = _num(row, "amount"), _num(row, usual_key)
    if math.isnan(usual) or usual <= 0:
        return amount, usual, f"amount {amount:.2f}; no earlier transactions for {whose} to compare"
    if amount < 0.5 * usual:
        return amount, usual, (f"amount {amount:.2f}, {usual / max(amount, 0.01):.0f}x below {whose} "
                               f"average ({usual:.2f})")
    return amount, usual, f"amount {amount / usual:.1f}x {whose} average ({amount:.2f} vs {usual:.2f})"


def _per(row, count_key, hours, label):
    n, n30 = _num(row, count_key), _num(row, "ctx_cust_n_30d")
    usual = n30 * hours / (30 * 24) if not math.isnan(n30) else math.nan
    return n, usual, (f"{n:.0f} earlier transactions by this card in the past {label} "
                      f"(usual: {usual:.1f})")


def _hour(row):
    hour, usual = _num(row, "ctx_hour"), _num(row, "ctx_cust_habit_hour")
    if math.isnan(usual):
        return hour, usual, f"at {_clock(hour)}; no 30-day history of this customer's hours"
    return hour, usual, f"at {_clock(hour)}; this customer usually pays around {_clock(usual)}"


def _gap(row):
    gap, n30 = _num(row, "ctx_gap_s"), _num(row, "ctx_cust_n_30d")
    usual = 30 * 86_400 / n30 if n30 and not math.isnan(n30) else math.nan
    if math.isnan(gap):
        return gap, usual, "first transaction of this card in the data"
    return gap, usual, (f"{_duration(gap)} since this card's previous transaction "
                        f"(usual gap: {_duration(usual)})")


def _channel(row):
    cnp, share = _num(row, "card_not_present"), _num(row, "ctx_cust_cnp_30d")
    what = "card not present" if cnp >= 0.5 else "card present"
    if math.isnan(share):
        return cnp, share, f"{what}; no 30-day history of this customer's channel"
    return cnp, share, f"{what}; {share:.0%} of this customer's 30-day payments were card-not-present"


def _speed(row):
    dist, gap = _num(row, "ctx_dist_prev_km"), _num(row, "ctx_gap_s")
    if math.isnan(dist):
        return dist, math.nan, "first transaction of this card in the data"
    speed = dist / (gap / 3600 + 1 / 60) if not math.isnan(gap) else math.nan
    return speed, math.nan, (f"{dist:.1f} km from this card's previous transaction {_duration(gap)} "
                             f"earlier (about {speed:.0f} km/h)")


def _feedback(scope, days, delay_days):
    def describe(row):
        n = _num(row, f"ctx_{scope}_confirmed_fraud_{days}d")
        where = "at this terminal" if scope == "terminal" else "on this card"
        return n, 0.0, (f"{n:.0f} frauds confirmed {where} between {days + delay_days:g} and "
                        f"{delay_days:g} days ago")
    return describe


def _describers(delay_days: float = 7.0) -> dict:
    """feature -> (group, describe(row) -> (value, usual, text))."""
    d = {
        "log_amount": ("amount", lambda r: _amount_vs(r, "ctx_cust_mean_30d", "this customer's 30-day")),
        "amount_ratio_7d": ("amount", lambda r: _amount_vs(r, "ctx_cust_mean_7d", "this customer's 7-day")),
        "amount_ratio_30d": ("amount", lambda r: _amount_vs(r, "ctx_cust_mean_30d", "this customer's 30-day")),
        "amount_z_30d": ("amount", lambda r: _amount_vs(r, "ctx_cust_mean_30d", "this customer's 30-day")),
        "hour_sin": ("hour", _hour), "hour_cos": ("hour", _hour), "hour_habit_gap": ("hour", _hour),
        "cust_count_1h": ("burst", lambda r: _per(r, "ctx_cust_n_1h", 1, "hour")),
        "cust_count_1d": ("burst", lambda r: _per(r, "ctx_cust_n_1d", 24, "24 hours")),
        "cust_count_7d": ("activity", lambda r: _per(r, "ctx_cust_n_7d", 168, "7 days")),
        "cust_count_30d": ("activity", lambda r: (_num(r, "ctx_cust_n_30d"), math.nan,
                                                  f"{_num(r, 'ctx_cust_n_30d'):.0f} transactions by this card in 30 days")),
        "small_count_1h": ("burst", lambda r: (_num(r, "ctx_cust_small_1h"), 0.0,
                                               f"{_num(r, 'ctx_cust_small_1h'):.0f} earlier small payment(s) (under 5.00) "
                                               "by this card in the past hour, a card-testing pattern")),
        "log_gap_prev": ("gap", _gap),
        "card_not_present": ("channel", _channel), "cnp_vs_habit": ("channel", _channel),
        "log_dist_home": ("place", lambda r: (_num(r, "ctx_dist_home_km"), _num(r, "ctx_cust_dist_home_30d"),
                                              f"terminal {_num(r, 'ctx_dist_home_km'):.1f} km from the customer's "
                                              f"home (usual: {_num(r, 'ctx_cust_dist_home_30d'):.1f} km)")),
        "log_dist_prev": ("travel", _speed), "log_speed_prev": ("travel", _speed),
        "term_count_1d": ("terminal", lambda r: (_num(r, "ctx_term_n_1d"), _num(r, "ctx_term_n_7d") / 7,
                                                 f"{_num(r, 'ctx_term_n_1d'):.0f} transactions at this terminal in "
                                                 f"the past 24 hours (usual: {_num(r, 'ctx_term_n_7d') / 7:.1f})")),
        "term_count_7d": ("terminal", lambda r: (_num(r, "ctx_term_n_7d"), math.nan,
                                                 f"{_num(r, 'ctx_term_n_7d'):.0f} transactions at this terminal in 7 days")),
        "term_amount_ratio_7d": ("terminal_amount", lambda r: _amount_vs(r, "ctx_term_mean_7d", "this terminal's 7-day")),
    }
    for scope in ("terminal", "customer"):
        for days in (7, 14, 28, 30, 60, 90):
            d[f"{scope}_confirmed_fraud_{days}d"] = (f"feedback_{scope}", _feedback(scope, days, delay_days))
    return d


def describe(feature: str, row, delay_days: float = 7.0) -> tuple[float, float, str]:
    """``(value, usual value, text)`` for one feature of one transaction (a dict-like row)."""
    group_fn = _describers(delay_days).get(feature)
    if group_fn is None:
        value = _num(row, feature)
        return value, math.nan, f"{feature} = {value:.3g}"
    return group_fn[1](row)


def top_reasons(shap_values: np.ndarray, feature_names: list[str], rows: pd.DataFrame,
                delay_days: float = 7.0, k: int = N_REASONS) -> pd.DataFrame:
    """Reason columns ``reason_{i}_{feature,shap,value,usual,text}`` for ``rows`` (same order).

    Args:
        shap_values: ``(n, d)`` SHAP values of the anomaly score.
        feature_names: the ``d`` model features.
        rows: ``n`` rows holding ``amount``, the features and the ``ctx_*`` columns.
    """
    describers = _describers(delay_days)
    out = {f"reason_{i}_{part}": [] for i in range(1, k + 1)
           for part in ("feature", "shap", "value", "usual", "text")}
    for values, (_, row) in zip(shap_values, rows.iterrows()):
        row = row.to_dict()
        chosen, groups = [], set()
        for j in np.argsort(-values, kind="stable"):
            name = feature_names[j]
            group = describers.get(name, (name,))[0]
            if values[j] <= 0 or group in groups:
                continue
            groups.add(group)
            chosen.append((name, float(values[j])))
            if len(chosen) == k:
                break
        for i in range(1, k + 1):
            if i <= len(chosen):
                name, shap_value = chosen[i - 1]
                value, usual, text = describe(name, row, delay_days)
            else:
                name, shap_value, value, usual, text = None, math.nan, math.nan, math.nan, None
            for part, v in zip(("feature", "shap", "value", "usual", "text"),
                               (name, shap_value, value, usual, text)):
                out[f"reason_{i}_{part}"].append(v)
    return pd.DataFrame(out, index=rows.index)


def usual_values(feature_names: list[str], rows: pd.DataFrame, delay_days: float = 7.0):
    """``(value, usual)`` arrays ``(n, d)`` for the long-format explanations table."""
    value = np.full((len(rows), len(feature_names)), np.nan)
    usual = np.full_like(value, np.nan)
    for i, (_, row) in enumerate(rows.iterrows()):
        row = row.to_dict()
        for j, name in enumerate(feature_names):
            value[i, j], usual[i, j], _ = describe(name, row, delay_days)
    return value, usual
