"""Point-in-time transaction features, computed out of core with DuckDB window functions.

Every aggregate uses a window ``RANGE BETWEEN w PRECEDING AND 1 PRECEDING`` over the
timestamp in microseconds, so a transaction's features see only transactions *strictly
earlier* than it (same-timestamp peers are excluded); the "previous transaction" is the
one before it in (timestamp, transaction_id) order. Appending later rows therefore never
changes an earlier row's features. DuckDB works in a file-backed database in a temporary
directory with a memory limit, spilling to disk, so files larger than memory are fine.

The features assume no simulator's mechanics, only what any bank's card history shows:
the amount against the card's own history (ratio to the 30-day median, robust z with the
median absolute deviation), counts and sums over 1 h / 24 h / 7 d, time since the previous
transaction, a terminal new to the card, hour of day against the card's habit, the channel
against the card's habit, distances between the location pairs the mapping names
(haversine for degrees), movement and speed between consecutive transactions, how rare
each passed-through category is for the card, passed-through numbers, terminal behaviour
(distinct cards, amount against the terminal's median; no labels), refunds in the card's
history, and (with analysts' confirmations) delayed feedback counts.

Refunds (negative amounts, when the mapping accepts them) stay in the history (the
previous-transaction gap, refund counts) but are not purchases: the amount statistics skip
them, and they are not written to the output, so they are never trained on or scored.

Output (:func:`featurise`): one Parquet file with the identifying columns, ``_row`` (the
position in time order), the model features (:func:`feature_names`) and ``ctx_*`` context
columns (raw values and the card's usual values) used for reason codes and the drift check.

Example:
    >>> featurise("tx.parquet", "features.parquet")                       # doctest: +SKIP
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from core.errors import BundleError
from core.io import atomic_path

from .feedback import feedback_sql, register_labels
from .mapping import CARD_NOT_PRESENT, ColumnMapping, native
from .schema import DEFAULT_TIMEZONE, configure, location_columns, open_transactions
from .sql import ident, literal, reading

US = 1_000_000
CARD_WINDOWS = {"1h": 3600, "24h": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400}
TERMINAL_WINDOWS = {"24h": 86_400, "7d": 7 * 86_400}
NO_HISTORY_GAP_S = 30 * 86_400
EARTH_RADIUS_KM = 6371.0088   # mean radius (IUGG)
ID_COLUMNS = ("transaction_id", "timestamp", "customer_id", "terminal_id", "amount")
PASS_THROUGH = ("is_fraud", "fraud_scenario")
MODEL_CONFIG = "finance.json"   # a model directory's JSON (written by finance.detector)


@dataclass
class FeatureConfig:
    """The column mapping (resolved against the training file), the feedback-loop settings,
    and the time zone aware timestamps are read in (:mod:`finance.schema`); saved with the
    model so scoring reads a file exactly as training did."""

    mapping: dict = field(default_factory=lambda: native().to_dict())
    feedback: bool = False
    feedback_delay_days: float = 7.0
    feedback_windows_days: dict = field(default_factory=lambda: {"terminal": [7, 28], "customer": [28]})
    timezone: str = DEFAULT_TIMEZONE

    @property
    def columns(self) -> ColumnMapping:
        return ColumnMapping(**self.mapping)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: dict) -> "FeatureConfig":
        """From a saved model's JSON; its values end up in SQL text, so they are checked."""
        try:
            cfg = cls(**state)
        except TypeError as err:
            raise BundleError(f"feature config does not match this unmask ({err})") from None
        if not _valid(cfg):
            raise BundleError(f"feature config holds invalid feedback windows, delay or time zone: {state}")
        if not isinstance(cfg.mapping, dict):
            raise BundleError("feature config: the column mapping is not a table")
        ColumnMapping.from_dict(cfg.mapping)
        return cfg


def saved_features(model_dir) -> FeatureConfig:
    """The feature configuration (column mapping, time zone) a trained model saved, read
    without loading its network: how ``evaluate`` and the dashboard read the model's files.

    Raises:
        BundleError: ``model_dir`` is not a finance model, in one line.
    """
    path = Path(model_dir) / MODEL_CONFIG
    try:
        state = json.loads(path.read_text())
        return FeatureConfig.from_dict(state["config"]["features"])
    except FileNotFoundError:
        raise BundleError(f"{model_dir}: not a finance model (no {MODEL_CONFIG})") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise BundleError(f"{path}: not a finance model's configuration ({err})") from None


def _valid(cfg: FeatureConfig) -> bool:
    def whole_days(d):
        return isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 3650

    windows = cfg.feedback_windows_days
    return (isinstance(windows, dict) and set(windows) <= {"terminal", "customer"}
            and all(isinstance(days, list) and all(map(whole_days, days)) for days in windows.values())
            and isinstance(cfg.feedback_delay_days, (int, float)) and isinstance(cfg.timezone, str))


def _window(name: str, key: str, seconds: int) -> str:
    return (f"{name} AS (PARTITION BY {key} ORDER BY ts_us "
            f"RANGE BETWEEN {seconds * US} PRECEDING AND 1 PRECEDING)")


def _distance(m: ColumnMapping, a: tuple[str, str], b: tuple[str, str]) -> str:
    """km between two (x, y) km points, or two (lat, lon) degree points (haversine)."""
    (a1, a2), (b1, b2) = map(lambda p: map(ident, p), (a, b))
    if m.units == "km":
        return f"sqrt(power({a1} - {b1}, 2) + power({a2} - {b2}, 2))"
    h = (f"power(sin(radians({b1} - {a1}) / 2), 2) + cos(radians({a1})) * cos(radians({b1})) "
         f"* power(sin(radians({b2} - {a2}) / 2), 2)")
    return f"2 * {EARTH_RADIUS_KM} * asin(sqrt(least(1.0, {h})))"


def _pair(a: str, b: str) -> str:
    return f"{a}_to_{b}"


def _aggregates(cfg: FeatureConfig) -> tuple[list[str], list[str]]:
    """Raw window aggregates (SELECT items) and the WINDOW clauses they use. ``purchase`` is
    the amount of a purchase and NULL for a refund, so the amount statistics skip refunds."""
    m = cfg.columns
    items, windows = [], []
    for w, s in CARD_WINDOWS.items():
        windows.append(_window(f"c{w}", "customer_id", s))
        items.append(f"count(purchase) OVER c{w} AS card_n_{w}")
    items += [f"coalesce(sum(purchase) OVER c{w}, 0) AS card_sum_{w}" for w in ("1h", "24h")]
    items += ["median(purchase) OVER c30d AS card_median_30d", "mad(purchase) OVER c30d AS card_mad_30d",
              "count(*) OVER c30d AS card_all_n_30d",
              "avg(hour_sin) OVER c30d AS card_hour_sin_30d", "avg(hour_cos) OVER c30d AS card_hour_cos_30d",
              "lag(ts_us) OVER prev AS prev_ts_us",
              "min(ts_us) OVER (PARTITION BY customer_id ORDER BY ts_us ROWS BETWEEN UNBOUNDED PRECEDING AND "
              "CURRENT ROW) AS card_first_ts_us",
              f"count(*) OVER (PARTITION BY customer_id, terminal_id ORDER BY ts_us RANGE BETWEEN "
              f"{CARD_WINDOWS['30d'] * US} PRECEDING AND 1 PRECEDING) AS card_term_n_30d"]
    windows.append("prev AS (PARTITION BY customer_id ORDER BY ts_us, transaction_id)")
    if "channel" in m.columns:
        items.append("avg(is_cnp) OVER c30d AS card_cnp_30d")
    for loc in m.travel:
        for col in location_columns(m, loc):
            items.append(f"lag({ident(col)}) OVER prev AS {ident('prev_' + col)}")
    for col in m.categorical:
        items.append(f"count(*) OVER (PARTITION BY customer_id, {ident('cat_' + col)} ORDER BY ts_us RANGE "
                     f"BETWEEN {CARD_WINDOWS['30d'] * US} PRECEDING AND 1 PRECEDING) AS {ident('card_cat_n_' + col)}")
    if m.refunds:
        items.append("count(refund) OVER c7d AS card_refunds_7d")
    for w, s in TERMINAL_WINDOWS.items():
        windows.append(_window(f"t{w}", "terminal_id", s))
        items += [f"count(purchase) OVER t{w} AS term_n_{w}",
                  f"count(DISTINCT customer_id) OVER t{w} AS term_cards_{w}"]
    items.append("median(purchase) OVER t7d AS term_median_7d")
    return items, windows


def _features(cfg: FeatureConfig) -> dict[str, str]:
    """Model features: name -> SQL over the aggregates. Order is the model's column order."""
    m = cfg.columns
    usual = "coalesce(card_median_30d, amount)"
    f = {"log_amount": "ln(1 + amount)",
         "amount_vs_median_30d": f"ln((amount + 1) / ({usual} + 1))",
         # Robust z: distance from the card's median in MADs (scaled to a normal's sigma),
         # with a floor of 10 % of the median + 1 so a card with a few equal payments is not
         # infinitely surprised by the next one.
         "amount_robust_z_30d": (f"greatest(-10, least(20, (amount - {usual}) / "
                                 f"(1.4826 * coalesce(card_mad_30d, 0) + 0.1 * {usual} + 1)))"),
         "hour_sin": "hour_sin", "hour_cos": "hour_cos",
         "hour_habit_gap": "1 - coalesce(hour_sin * card_hour_sin_30d + hour_cos * card_hour_cos_30d, 1)"}
    for w in ("1h", "24h", "7d"):
        f[f"card_count_{w}"] = f"ln(1 + card_n_{w})"
    for w in ("1h", "24h"):
        f[f"card_sum_{w}"] = f"ln(1 + card_sum_{w})"
    f["log_gap_prev"] = f"ln(1 + coalesce((ts_us - prev_ts_us) / {US}, {NO_HISTORY_GAP_S}))"
    f["new_terminal_30d"] = "CASE WHEN card_term_n_30d = 0 THEN 1.0 ELSE 0.0 END"
    if "channel" in m.columns:
        f["card_not_present"] = "is_cnp"
        f["cnp_vs_habit"] = "is_cnp - coalesce(card_cnp_30d, is_cnp)"
    for a, b in m.distances:
        f[f"log_dist_{_pair(a, b)}"] = f"ln(1 + {ident('dist_' + _pair(a, b))})"
    for loc in m.travel:
        move = f"coalesce({ident('move_' + loc)}, 0)"
        f[f"log_move_{loc}"] = f"ln(1 + {move})"
        f[f"log_speed_{loc}"] = f"ln(1 + {move} / ((ts_us - coalesce(prev_ts_us, ts_us)) / {3600 * US} + 1.0 / 60))"
    for col in m.categorical:   # -log of the card's smoothed 30-day share of this value
        f[f"rarity_{col}"] = f"-ln(({ident('card_cat_n_' + col)} + 1.0) / (card_all_n_30d + 2.0))"
    for col in m.numeric:       # signed log: heavy tails of an unknown column tamed, sign kept
        value = f"coalesce({ident('num_' + col)}, 0)"
        f[f"num_{col}"] = f"sign({value}) * ln(1 + abs({value}))"
    if m.refunds:
        f["card_refunds_7d"] = "ln(1 + card_refunds_7d)"
    f["term_cards_24h"] = "ln(1 + term_cards_24h)"
    f["term_cards_vs_week"] = "ln((term_cards_24h + 1.0) / (term_cards_7d / 7.0 + 1.0))"
    f["term_amount_vs_median_7d"] = "ln((amount + 1) / (coalesce(term_median_7d, amount) + 1))"
    if cfg.feedback:
        for scope, days in cfg.feedback_windows_days.items():
            for d in days:
                f[f"{scope}_confirmed_fraud_{d}d"] = f"ln(1 + coalesce(fb_{scope}_{d}d, 0))"
    return f


def _context(cfg: FeatureConfig) -> dict[str, str]:
    """``ctx_*`` columns: raw values and the card's usual values for reason codes."""
    m = cfg.columns
    ctx = {"ctx_hour": "hour_of_day", "ctx_card_median_30d": "card_median_30d",
           "ctx_card_mad_30d": "card_mad_30d",
           "ctx_card_habit_hour": ("CASE WHEN card_n_30d > 0 THEN (degrees(atan2(card_hour_sin_30d, "
                                   "card_hour_cos_30d)) / 15 + 24) % 24 END"),
           "ctx_gap_s": "(ts_us - prev_ts_us) / 1e6", "ctx_card_all_n_30d": "card_all_n_30d",
           "ctx_card_age_days": f"(ts_us - card_first_ts_us) / {86_400 * US}",
           "ctx_card_term_n_30d": "card_term_n_30d", "ctx_term_median_7d": "term_median_7d"}
    ctx.update({f"ctx_card_n_{w}": f"card_n_{w}" for w in CARD_WINDOWS})
    ctx.update({f"ctx_card_sum_{w}": f"card_sum_{w}" for w in ("1h", "24h")})
    ctx.update({f"ctx_term_{k}_{w}": f"term_{k}_{w}" for k in ("n", "cards") for w in TERMINAL_WINDOWS})
    if "channel" in m.columns:
        ctx["ctx_card_cnp_30d"] = "card_cnp_30d"
    for a, b in m.distances:
        ctx[f"ctx_dist_{_pair(a, b)}_km"] = ident("dist_" + _pair(a, b))
    for loc in m.travel:
        ctx[f"ctx_move_{loc}_km"] = ident("move_" + loc)
    for col in m.categorical:
        ctx[f"ctx_card_cat_n_{col}"] = ident("card_cat_n_" + col)
    for col in m.numeric:
        ctx[f"ctx_num_{col}"] = ident("num_" + col)
    if m.refunds:
        ctx["ctx_card_refunds_7d"] = "card_refunds_7d"
    if cfg.feedback:
        ctx.update({f"ctx_{s}_confirmed_fraud_{d}d": f"coalesce(fb_{s}_{d}d, 0)"
                    for s, days in cfg.feedback_windows_days.items() for d in days})
    return ctx


def category_context(cfg: FeatureConfig) -> dict[str, str]:
    """``ctx_cat_<column>`` (the raw category, text) -> the passed-through column."""
    return {f"ctx_cat_{col}": col for col in cfg.columns.categorical}


def feature_names(cfg: FeatureConfig) -> list[str]:
    return list(_features(cfg))


def config_for(mapping: ColumnMapping, feedback: bool = False, delay_days: float = 7.0,
               timezone: str = DEFAULT_TIMEZONE) -> FeatureConfig:
    """A FeatureConfig for a mapping resolved against a file (:func:`open_transactions`)."""
    return FeatureConfig(mapping=mapping.to_dict(), feedback=feedback, feedback_delay_days=delay_days,
                         timezone=timezone)


def _base_sql(cfg: FeatureConfig) -> str:
    m = cfg.columns
    extra = ["CASE WHEN amount >= 0 THEN amount END AS purchase", "CASE WHEN amount < 0 THEN 1 END AS refund"]
    if "channel" in m.columns:
        extra.append(f"CAST(channel = {literal(CARD_NOT_PRESENT)} AS DOUBLE) AS is_cnp")
    for a, b in m.distances:
        extra.append(f"{_distance(m, location_columns(m, a), location_columns(m, b))} AS "
                     f"{ident('dist_' + _pair(a, b))}")
    extra += [ident(c) for loc in m.travel for c in location_columns(m, loc)]
    extra += [ident("cat_" + c) for c in m.categorical] + [ident("num_" + c) for c in m.numeric]
    keep = list(ID_COLUMNS) + [c for c, role in zip(PASS_THROUGH, ("label", "scenario")) if role in m.columns]
    hour = "(hour(timestamp) + minute(timestamp) / 60.0 + second(timestamp) / 3600.0)"
    return (f"SELECT {', '.join(keep)}, epoch_us(timestamp) AS ts_us, {hour} AS hour_of_day, "
            f"sin(2 * pi() * {hour} / 24) AS hour_sin, cos(2 * pi() * {hour} / 24) AS hour_cos, "
            f"{', '.join(extra)}, "
            "row_number() OVER (ORDER BY epoch_us(timestamp), transaction_id) - 1 AS _row FROM tx")


def _with_movement(cfg: FeatureConfig, source: str) -> str:
    """``source`` plus ``move_<loc>``: km from the card's previous transaction's location."""
    m = cfg.columns
    if not m.travel:
        return source
    moves = [f"{_distance(m, ['prev_' + c for c in location_columns(m, loc)], location_columns(m, loc))} "
             f"AS {ident('move_' + loc)}" for loc in m.travel]
    return f"(SELECT *, {', '.join(moves)} FROM {source})"


def featurise(data, out, cfg: FeatureConfig | None = None, labels=None, memory_limit: str | None = None,
              row_group_size: int = 131_072, feedback_delay_days: float = 7.0,
              timezone: str = DEFAULT_TIMEZONE, mapping: ColumnMapping | None = None) -> FeatureConfig:
    """Compute point-in-time features of the transactions in ``data``; write ``out`` (Parquet).

    Args:
        data: transactions file (Parquet/CSV; validated by :mod:`finance.schema`).
        out: output Parquet file (written atomically).
        cfg: feature configuration (from a trained model: its mapping is applied strictly);
            default: derived from the data and ``mapping``.
        labels: confirmed dispositions for the feedback features (a DataFrame with
            ``transaction_id``, ``confirmed_at``, ``is_fraud``; see :mod:`finance.feedback`).
            With ``cfg=None``, giving labels turns the feedback features on; with a
            ``cfg``, they are used when ``cfg.feedback`` (``None`` = no confirmations).
        memory_limit: DuckDB memory limit (default ``UNMASK_DUCKDB_MEMORY`` or 1GB).
        row_group_size: Parquet row-group size of the output.
        feedback_delay_days: the feedback delay when ``cfg`` is None.
        timezone: the zone aware timestamps are converted to when ``cfg`` is None
            (otherwise ``cfg.timezone``).
        mapping: the user's column mapping when ``cfg`` is None (default: unmask's own names).

    Returns:
        The feature configuration used.
    """

    with tempfile.TemporaryDirectory(prefix="unmask-features-") as work:
        import duckdb

        con = configure(duckdb.connect(str(Path(work) / "work.duckdb")), memory_limit,
                        temp_dir=Path(work) / "spill")
        try:
            if cfg is None:
                resolved = open_transactions(con, data, timezone=timezone, mapping=mapping)
                cfg = config_for(resolved, labels is not None, feedback_delay_days, timezone)
            else:   # the model's feature columns are required; its label may be absent here
                resolved = open_transactions(con, data, timezone=cfg.timezone, mapping=cfg.columns)
                cfg = replace(cfg, mapping=resolved.to_dict())
            with reading(data):  # the file is read again here: what the checks missed is one line too
                con.execute(f"CREATE TABLE base AS {_base_sql(cfg)}")
            items, windows = _aggregates(cfg)
            con.execute(f"CREATE TABLE agg AS SELECT *, {', '.join(items)} FROM base "
                        f"WINDOW {', '.join(windows)}")
            source = "agg"
            if cfg.feedback:
                register_labels(con, labels, data)
                source = f"(SELECT * FROM agg LEFT JOIN ({feedback_sql(cfg)}) fb USING (_row))"
            source = _with_movement(cfg, source)
            m = cfg.columns
            keep = list(ID_COLUMNS) + [c for c, r in zip(PASS_THROUGH, ("label", "scenario")) if r in m.columns]
            columns = [ident(c) for c in keep + ["_row"]]
            columns += [f"CAST({sql} AS DOUBLE) AS {ident(name)}" for name, sql in _features(cfg).items()]
            columns += [f"CAST({sql} AS DOUBLE) AS {ident(name)}" for name, sql in _context(cfg).items()]
            columns += [f"{ident('cat_' + col)} AS {ident(name)}" for name, col in category_context(cfg).items()]
            with atomic_path(out) as tmp:   # refunds are history, never a scored purchase
                con.execute(f"COPY (SELECT {', '.join(columns)} FROM {source} WHERE amount >= 0) TO "
                            f"{literal(tmp)} (FORMAT PARQUET, ROW_GROUP_SIZE {int(row_group_size)})")
        finally:
            con.close()
    return cfg
