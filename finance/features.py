"""Point-in-time transaction features, computed out of core with DuckDB window functions.

Every aggregate uses a window ``RANGE BETWEEN w PRECEDING AND 1 PRECEDING`` over the
timestamp in microseconds, so a transaction's features see only transactions *strictly
earlier* than it (same-timestamp peers are excluded); the "previous transaction" is the
one before it in (timestamp, transaction_id) order. Appending later rows therefore never
changes an earlier row's features. DuckDB works in a file-backed database in a temporary
directory with a memory limit, spilling to disk, so files larger than memory are fine.

Output (:func:`featurise`): one Parquet file with the identifying columns, ``_row`` (the
position in time order), the model features (:func:`feature_names`) and ``ctx_*`` context
columns (the customer's usual values) used for reason codes.

Example:
    >>> featurise("tx.parquet", "features.parquet")                       # doctest: +SKIP
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.errors import BundleError, DataValidationError
from core.io import atomic_path

from .schema import CARD_NOT_PRESENT, DEFAULT_TIMEZONE, configure, open_transactions
from .sql import literal, reading

US = 1_000_000
CUSTOMER_WINDOWS = {"1h": 3600, "1d": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400}
TERMINAL_WINDOWS = {"1d": 86_400, "7d": 7 * 86_400}
SMALL_AMOUNT = 5.0
NO_HISTORY_GAP_S = 30 * 86_400
ID_COLUMNS = ("transaction_id", "timestamp", "customer_id", "terminal_id", "amount")
PASS_THROUGH = ("is_fraud", "fraud_scenario")


@dataclass
class FeatureConfig:
    """Which feature groups exist (set from the data), the feedback-loop settings, and the
    time zone aware timestamps are read in (:mod:`finance.schema`; saved with the model so
    scoring reads a file exactly as training did)."""

    has_channel: bool = True
    has_coordinates: bool = True
    feedback: bool = False
    feedback_delay_days: float = 7.0
    feedback_windows_days: dict = field(default_factory=lambda: {"terminal": [7, 28], "customer": [28]})
    timezone: str = DEFAULT_TIMEZONE

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
        return cfg


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


def _aggregates(cfg: FeatureConfig) -> tuple[list[str], list[str]]:
    """Raw window aggregates (SELECT items) and the WINDOW clauses they use."""
    items, windows = [], []
    for w, s in CUSTOMER_WINDOWS.items():
        windows.append(_window(f"c{w}", "customer_id", s))
        items.append(f"count(*) OVER c{w} AS cust_n_{w}")
    for w in ("7d", "30d"):
        items.append(f"avg(amount) OVER c{w} AS cust_mean_{w}")
    items += ["stddev_pop(amount) OVER c30d AS cust_std_30d",
              f"coalesce(sum(CASE WHEN amount < {SMALL_AMOUNT} THEN 1 ELSE 0 END) OVER c1h, 0) AS cust_small_1h",
              "avg(hour_sin) OVER c30d AS cust_hour_sin_30d",
              "avg(hour_cos) OVER c30d AS cust_hour_cos_30d",
              "lag(ts_us) OVER prev AS prev_ts_us"]
    windows.append("prev AS (PARTITION BY customer_id ORDER BY ts_us, transaction_id)")
    if cfg.has_channel:
        items.append("avg(is_cnp) OVER c30d AS cust_cnp_30d")
    if cfg.has_coordinates:
        items += ["lag(terminal_x) OVER prev AS prev_x", "lag(terminal_y) OVER prev AS prev_y",
                  "avg(dist_home) OVER c30d AS cust_dist_home_30d"]
    for w, s in TERMINAL_WINDOWS.items():
        windows.append(_window(f"t{w}", "terminal_id", s))
        items.append(f"count(*) OVER t{w} AS term_n_{w}")
    items.append("avg(amount) OVER t7d AS term_mean_7d")
    return items, windows


def _features(cfg: FeatureConfig) -> dict[str, str]:
    """Model features: name -> SQL over the aggregates. Order is the model's column order."""
    f = {"log_amount": "ln(1 + amount)",
         "amount_ratio_7d": "ln((amount + 1) / (coalesce(cust_mean_7d, amount) + 1))",
         "amount_ratio_30d": "ln((amount + 1) / (coalesce(cust_mean_30d, amount) + 1))",
         # z-score against a std shrunk towards the mean (a coefficient-of-variation-1
         # prior worth 5 transactions), so a card with little history is not extreme.
         "amount_z_30d": ("greatest(-10, least(20, (amount - coalesce(cust_mean_30d, amount)) / "
                          "(sqrt((cust_n_30d * power(coalesce(cust_std_30d, 0), 2) + "
                          "5 * power(coalesce(cust_mean_30d, amount), 2)) / (cust_n_30d + 5)) + 1)))"),
         "hour_sin": "hour_sin", "hour_cos": "hour_cos",
         "hour_habit_gap": "1 - coalesce(hour_sin * cust_hour_sin_30d + hour_cos * cust_hour_cos_30d, 1)"}
    for w in CUSTOMER_WINDOWS:
        f[f"cust_count_{w}"] = f"ln(1 + cust_n_{w})"
    f["small_count_1h"] = "ln(1 + cust_small_1h)"
    f["log_gap_prev"] = f"ln(1 + coalesce((ts_us - prev_ts_us) / {US}, {NO_HISTORY_GAP_S}))"
    if cfg.has_channel:
        f["card_not_present"] = "is_cnp"
        f["cnp_vs_habit"] = "is_cnp - coalesce(cust_cnp_30d, is_cnp)"
    if cfg.has_coordinates:
        f["log_dist_home"] = "ln(1 + dist_home)"
        f["log_dist_prev"] = "ln(1 + coalesce(dist_prev, 0))"
        f["log_speed_prev"] = (f"ln(1 + coalesce(dist_prev / ((ts_us - prev_ts_us) / {3600 * US} "
                               "+ 1.0 / 60), 0))")
    for w in TERMINAL_WINDOWS:
        f[f"term_count_{w}"] = f"ln(1 + term_n_{w})"
    f["term_amount_ratio_7d"] = "ln((amount + 1) / (coalesce(term_mean_7d, amount) + 1))"
    if cfg.feedback:
        for scope, days in cfg.feedback_windows_days.items():
            for d in days:
                f[f"{scope}_confirmed_fraud_{d}d"] = f"ln(1 + coalesce(fb_{scope}_{d}d, 0))"
    return f


CONTEXT = {  # ctx_* columns: raw values and the customer's usual values for reason codes
    "ctx_hour": "hour_of_day",
    "ctx_cust_mean_7d": "cust_mean_7d", "ctx_cust_mean_30d": "cust_mean_30d",
    "ctx_cust_n_1h": "cust_n_1h", "ctx_cust_n_1d": "cust_n_1d", "ctx_cust_n_7d": "cust_n_7d",
    "ctx_cust_n_30d": "cust_n_30d", "ctx_cust_small_1h": "cust_small_1h",
    "ctx_cust_habit_hour": ("CASE WHEN cust_n_30d > 0 THEN (degrees(atan2(cust_hour_sin_30d, "
                            "cust_hour_cos_30d)) / 15 + 24) % 24 END"),
    "ctx_gap_s": "(ts_us - prev_ts_us) / 1e6",
    "ctx_term_n_1d": "term_n_1d", "ctx_term_n_7d": "term_n_7d", "ctx_term_mean_7d": "term_mean_7d",
}


def feature_names(cfg: FeatureConfig) -> list[str]:
    return list(_features(cfg))


def config_for(columns, feedback: bool = False, delay_days: float = 7.0,
               timezone: str = DEFAULT_TIMEZONE) -> FeatureConfig:
    """A FeatureConfig matching the columns present in a transactions view."""
    coords = all(c in columns for c in ("terminal_x", "terminal_y", "customer_x", "customer_y"))
    return FeatureConfig(has_channel="channel" in columns, has_coordinates=coords,
                         feedback=feedback, feedback_delay_days=delay_days, timezone=timezone)


def _base_sql(cfg: FeatureConfig, columns) -> str:
    extra = [f"CAST(channel = {literal(CARD_NOT_PRESENT)} AS DOUBLE) AS is_cnp"] if cfg.has_channel else []
    if cfg.has_coordinates:
        extra.append("sqrt(power(terminal_x - customer_x, 2) + power(terminal_y - customer_y, 2)) AS dist_home")
    keep = [c for c in ID_COLUMNS + PASS_THROUGH if c in columns]
    keep += [c for c in ("terminal_x", "terminal_y") if cfg.has_coordinates]
    hour = "(hour(timestamp) + minute(timestamp) / 60.0 + second(timestamp) / 3600.0)"
    return (f"SELECT {', '.join(keep)}, epoch_us(timestamp) AS ts_us, {hour} AS hour_of_day, "
            f"sin(2 * pi() * {hour} / 24) AS hour_sin, cos(2 * pi() * {hour} / 24) AS hour_cos"
            f"{''.join(', ' + e for e in extra)}, "
            "row_number() OVER (ORDER BY epoch_us(timestamp), transaction_id) - 1 AS _row FROM tx")


def featurise(data, out, cfg: FeatureConfig | None = None, labels=None, memory_limit: str | None = None,
              row_group_size: int = 131_072, feedback_delay_days: float = 7.0,
              timezone: str = DEFAULT_TIMEZONE) -> FeatureConfig:
    """Compute point-in-time features of the transactions in ``data``; write ``out`` (Parquet).

    Args:
        data: transactions file (Parquet/CSV; validated by :mod:`finance.schema`).
        out: output Parquet file (written atomically).
        cfg: feature configuration (from a trained model); default: derived from the data.
        labels: confirmed dispositions for the feedback features (a DataFrame with
            ``transaction_id``, ``confirmed_at``, ``is_fraud``; see :mod:`finance.feedback`).
            With ``cfg=None``, giving labels turns the feedback features on; with a
            ``cfg``, they are used when ``cfg.feedback`` (``None`` = no confirmations).
        memory_limit: DuckDB memory limit (default ``UNMASK_DUCKDB_MEMORY`` or 1GB).
        row_group_size: Parquet row-group size of the output.
        feedback_delay_days: the feedback delay when ``cfg`` is None.
        timezone: the zone aware timestamps are converted to when ``cfg`` is None
            (otherwise ``cfg.timezone``).

    Returns:
        The feature configuration used.
    """
    from .feedback import feedback_sql, register_labels

    with tempfile.TemporaryDirectory(prefix="unmask-features-") as work:
        import duckdb

        con = configure(duckdb.connect(str(Path(work) / "work.duckdb")), memory_limit,
                        temp_dir=Path(work) / "spill")
        try:
            columns = open_transactions(con, data, timezone=cfg.timezone if cfg else timezone)
            cfg = cfg or config_for(columns, labels is not None, feedback_delay_days, timezone)
            if cfg.has_channel and "channel" not in columns:
                raise_missing(data, "channel")
            if cfg.has_coordinates and not all(c in columns for c in ("terminal_x", "terminal_y", "customer_x", "customer_y")):
                raise_missing(data, "terminal_x, terminal_y, customer_x, customer_y")
            with reading(data):  # the file is read again here: what the checks missed is one line too
                con.execute(f"CREATE TABLE base AS {_base_sql(cfg, columns)}")
            items, windows = _aggregates(cfg)
            con.execute(f"CREATE TABLE agg AS SELECT *, {', '.join(items)} FROM base "
                        f"WINDOW {', '.join(windows)}")
            source = "agg"
            if cfg.feedback:
                register_labels(con, labels, data)
                source = f"(SELECT * FROM agg LEFT JOIN ({feedback_sql(cfg)}) fb USING (_row))"
            if cfg.has_coordinates:
                source = (f"(SELECT *, sqrt(power(terminal_x - prev_x, 2) + power(terminal_y - prev_y, 2))"
                          f" AS dist_prev FROM {source})")
            keep = [c for c in ID_COLUMNS + PASS_THROUGH if c in columns] + ["_row"]
            feats = [f"CAST({sql} AS DOUBLE) AS {name}" for name, sql in _features(cfg).items()]
            ctx = [f"CAST({sql} AS DOUBLE) AS {name}" for name, sql in CONTEXT.items()]
            if cfg.has_coordinates:
                ctx += ["dist_home AS ctx_dist_home_km", "cust_dist_home_30d AS ctx_cust_dist_home_30d",
                        "dist_prev AS ctx_dist_prev_km"]
            if cfg.has_channel:
                ctx += ["cust_cnp_30d AS ctx_cust_cnp_30d"]
            if cfg.feedback:
                ctx += [f"CAST(coalesce(fb_{s}_{d}d, 0) AS DOUBLE) AS ctx_{s}_confirmed_fraud_{d}d"
                        for s, days in cfg.feedback_windows_days.items() for d in days]
            with atomic_path(out) as tmp:
                con.execute(f"COPY (SELECT {', '.join(keep + feats + ctx)} FROM {source}) TO "
                            f"{literal(tmp)} (FORMAT PARQUET, ROW_GROUP_SIZE {int(row_group_size)})")
        finally:
            con.close()
    return cfg


def raise_missing(data, what):
    raise DataValidationError(f"{data}: the model uses column(s) {what}, which this file lacks")
