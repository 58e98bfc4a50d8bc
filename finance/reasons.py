"""Reason codes: the top SHAP features of an alert, in words a fraud analyst understands.

Every model feature has one entry in the display table (:func:`display`): a group (amount,
burst, place, ...), a short display name (the dashboard's labels) and a sentence with units
built from the transaction's values and the card's usual ones, e.g.
"amount 41.5x the card's 30-day median (415.00 vs 10.00)" or
"7 transactions by this card in the last hour (usual: 0.2)". Features named after the
user's columns (distances between locations, movement, category rarity, passed-through
numbers) are matched by their prefix. The top reasons are the features with the largest
positive SHAP value, at most one per group.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd

N_REASONS = 3


class Display(NamedTuple):
    """How one feature is shown: its reason group, short name, and ``describe(row) ->
    (value, usual value, sentence)``."""

    group: str
    name: str
    describe: Callable


def _num(row, key):
    value = row.get(key)
    try:
        return float(value) if value is not None and not pd.isna(value) else math.nan
    except (TypeError, ValueError):
        return math.nan


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
        return amount, usual, f"amount {amount:.2f}; no earlier purchases for {whose} to compare"
    if amount < 0.5 * usual:
        return amount, usual, (f"amount {amount:.2f}, {usual / max(amount, 0.01):.1f}x below {whose} "
                               f"({usual:.2f})")
    return amount, usual, f"amount {amount / usual:.1f}x {whose} ({amount:.2f} vs {usual:.2f})"


def _robust_z(row):
    amount, median, mad = _num(row, "amount"), _num(row, "ctx_card_median_30d"), _num(row, "ctx_card_mad_30d")
    if math.isnan(median):
        return amount, median, f"amount {amount:.2f}; no earlier purchases by this card in 30 days"
    z = (amount - median) / (1.4826 * (0 if math.isnan(mad) else mad) + 0.1 * median + 1)
    side = "above" if z >= 0 else "below"
    return amount, median, (f"amount {amount:.2f} is {abs(z):.1f} typical deviations {side} the card's "
                            f"30-day median ({median:.2f})")


def _count(window, hours, label):
    def describe(row):
        n, n30 = _num(row, f"ctx_card_n_{window}"), _num(row, "ctx_card_n_30d")
        usual = n30 * hours / (30 * 24) if not math.isnan(n30) else math.nan
        return n, usual, f"{n:.0f} transactions by this card in the last {label} (usual: {usual:.1f})"
    return describe


def _spent(window, hours, label):
    def describe(row):
        total, n30, median = _num(row, f"ctx_card_sum_{window}"), _num(row, "ctx_card_n_30d"), _num(
            row, "ctx_card_median_30d")
        usual = (n30 * median * hours / (30 * 24)) if not (math.isnan(n30) or math.isnan(median)) else math.nan
        return total, usual, (f"{total:.2f} spent by this card in the last {label} "
                              f"(usual: about {0 if math.isnan(usual) else usual:.2f})")
    return describe


def _hour(row):
    hour, usual = _num(row, "ctx_hour"), _num(row, "ctx_card_habit_hour")
    if math.isnan(usual):
        return hour, usual, f"at {_clock(hour)}; no 30-day history of this card's hours"
    return hour, usual, f"at {_clock(hour)}; this card usually pays around {_clock(usual)}"


def _gap(row):
    gap, n30 = _num(row, "ctx_gap_s"), _num(row, "ctx_card_n_30d")
    usual = 30 * 86_400 / n30 if n30 and not math.isnan(n30) else math.nan
    if math.isnan(gap):
        return gap, usual, "first transaction of this card in the data"
    return gap, usual, (f"{_duration(gap)} since this card's previous transaction "
                        f"(usual gap: {_duration(usual)})")


def _new_terminal(row):
    seen, n = _num(row, "ctx_card_term_n_30d"), _num(row, "ctx_card_all_n_30d")
    if seen == 0:
        return seen, n, (f"first transaction of this card at this terminal in 30 days "
                         f"({n:.0f} earlier transactions elsewhere)")
    return seen, n, f"{seen:.0f} earlier transactions of this card at this terminal in 30 days"


def _channel(row):
    cnp, share = _num(row, "card_not_present"), _num(row, "ctx_card_cnp_30d")
    what = "card not present" if cnp >= 0.5 else "card present"
    if math.isnan(share):
        return cnp, share, f"{what}; no 30-day history of this card's channel"
    return cnp, share, f"{what}; {share:.0%} of this card's 30-day payments were card-not-present"


def _refunds(row):
    n = _num(row, "ctx_card_refunds_7d")
    return n, 0.0, f"{n:.0f} refund(s) on this card in the last 7 days"


def _term_cards(row):
    day, week = _num(row, "ctx_term_cards_24h"), _num(row, "ctx_term_cards_7d")
    return day, week / 7, (f"{day:.0f} distinct cards at this terminal in the last 24 hours "
                           f"(usual: {week / 7:.1f} per day)")


def _distance(a, b):
    def describe(row):
        km = _num(row, f"ctx_dist_{a}_to_{b}_km")
        return km, math.nan, f"{a} to {b}: {km:,.1f} km"
    return describe


def _travel(loc):
    def describe(row):
        km, gap = _num(row, f"ctx_move_{loc}_km"), _num(row, "ctx_gap_s")
        if math.isnan(km) or math.isnan(gap):
            return km, math.nan, "first transaction of this card in the data"
        speed = km / (gap / 3600 + 1 / 60)
        return speed, math.nan, (f"{loc} {km:,.1f} km from the card's previous transaction "
                                 f"{_duration(gap)} earlier (about {speed:,.0f} km/h)")
    return describe


def _rarity(col):
    def describe(row):
        seen, n = _num(row, f"ctx_card_cat_n_{col}"), _num(row, "ctx_card_all_n_30d")
        value = row.get(f"ctx_cat_{col}")
        shown = f"{col} {value!r}" if isinstance(value, str) else col
        return seen, n, f"{shown} in {seen:.0f} of this card's {n:.0f} transactions in the last 30 days"
    return describe


def _numeric(col):
    def describe(row):
        value = _num(row, f"ctx_num_{col}")
        return value, math.nan, f"{col} = {value:.4g}"
    return describe


def _feedback(scope, days, delay_days):
    def describe(row):
        n = _num(row, f"ctx_{scope}_confirmed_fraud_{days}d")
        where = "at this terminal" if scope == "terminal" else "on this card"
        return n, 0.0, (f"{n:.0f} frauds confirmed {where} between {days + delay_days:g} and "
                        f"{delay_days:g} days ago")
    return describe


FIXED = {
    "log_amount": Display("amount", "amount", lambda r: _amount_vs(r, "ctx_card_median_30d",
                                                                   "the card's 30-day median")),
    "amount_vs_median_30d": Display("amount", "amount vs the card's 30-day median",
                                    lambda r: _amount_vs(r, "ctx_card_median_30d", "the card's 30-day median")),
    "amount_robust_z_30d": Display("amount", "amount vs the card's usual spread", _robust_z),
    "hour_sin": Display("hour", "hour of day", _hour),
    "hour_cos": Display("hour", "hour of day", _hour),
    "hour_habit_gap": Display("hour", "hour vs the card's habit", _hour),
    "card_count_1h": Display("burst", "transactions in the last hour", _count("1h", 1, "hour")),
    "card_count_24h": Display("burst", "transactions in the last 24 hours", _count("24h", 24, "24 hours")),
    "card_count_7d": Display("activity", "transactions in the last 7 days", _count("7d", 168, "7 days")),
    "card_sum_1h": Display("spend", "spent in the last hour", _spent("1h", 1, "hour")),
    "card_sum_24h": Display("spend", "spent in the last 24 hours", _spent("24h", 24, "24 hours")),
    "log_gap_prev": Display("gap", "time since the previous transaction", _gap),
    "new_terminal_30d": Display("new_terminal", "terminal new to the card", _new_terminal),
    "card_not_present": Display("channel", "card not present", _channel),
    "cnp_vs_habit": Display("channel", "channel vs the card's habit", _channel),
    "card_refunds_7d": Display("refunds", "refunds in the last 7 days", _refunds),
    "term_cards_24h": Display("terminal", "cards at the terminal in 24 hours", _term_cards),
    "term_cards_vs_week": Display("terminal", "cards at the terminal vs its week", _term_cards),
    "term_amount_vs_median_7d": Display("terminal_amount", "amount vs the terminal's 7-day median",
                                        lambda r: _amount_vs(r, "ctx_term_median_7d",
                                                             "this terminal's 7-day median")),
}


def display(feature: str, delay_days: float = 7.0) -> Display:
    """The display entry of ``feature`` (fixed names, then the user-named prefixes)."""
    if feature in FIXED:
        return FIXED[feature]
    if feature.startswith("log_dist_") and "_to_" in feature:
        a, b = feature.removeprefix("log_dist_").split("_to_", 1)
        return Display("place", f"distance {a} to {b}", _distance(a, b))
    for prefix, what in (("log_move_", "distance"), ("log_speed_", "speed")):
        if feature.startswith(prefix):
            loc = feature.removeprefix(prefix)
            return Display("travel", f"{what} from the previous {loc}", _travel(loc))
    if feature.startswith("rarity_"):
        col = feature.removeprefix("rarity_")
        return Display(f"category {col}", f"{col} rare for the card", _rarity(col))
    if feature.startswith("num_"):
        col = feature.removeprefix("num_")
        return Display(f"numeric {col}", col, _numeric(col))
    for scope in ("terminal", "customer"):
        head = f"{scope}_confirmed_fraud_"
        if feature.startswith(head) and feature.endswith("d") and feature[len(head):-1].isdigit():
            days = int(feature[len(head):-1])
            where = "at the terminal" if scope == "terminal" else "on the card"
            return Display(f"feedback_{scope}", f"confirmed frauds {where} ({days} days)",
                           _feedback(scope, days, delay_days))
    return Display(feature, feature, lambda r: (_num(r, feature), math.nan, f"{feature} = {_num(r, feature):.3g}"))


def display_name(feature: str) -> str:
    """The short plain-words name of a model feature (reason codes and the dashboard)."""
    return display(feature).name


def describe(feature: str, row, delay_days: float = 7.0) -> tuple[float, float, str]:
    """``(value, usual value, text)`` for one feature of one transaction (a dict-like row)."""
    return display(feature, delay_days).describe(row)


def top_reasons(shap_values: np.ndarray, feature_names: list[str], rows: pd.DataFrame,
                delay_days: float = 7.0, k: int = N_REASONS) -> pd.DataFrame:
    """Reason columns ``reason_{i}_{feature,shap,value,usual,text}`` for ``rows`` (same order).

    Args:
        shap_values: ``(n, d)`` SHAP values of the anomaly score.
        feature_names: the ``d`` model features.
        rows: ``n`` rows holding ``amount``, the features and the ``ctx_*`` columns.
    """
    groups_of = [display(name, delay_days).group for name in feature_names]
    out = {f"reason_{i}_{part}": [] for i in range(1, k + 1)
           for part in ("feature", "shap", "value", "usual", "text")}
    for values, (_, row) in zip(shap_values, rows.iterrows()):
        row = row.to_dict()
        chosen, groups = [], set()
        for j in np.argsort(-values, kind="stable"):
            if values[j] <= 0 or groups_of[j] in groups:
                continue
            groups.add(groups_of[j])
            chosen.append((feature_names[j], float(values[j])))
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
