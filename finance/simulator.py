"""Card-transaction simulator in the spirit of the Fraud Detection Handbook (Le Borgne et al.).

Customers and terminals are placed on a 100 x 100 km square. Each customer has a spending
profile (mean/std amount, daily rate, time-of-day habit, card-not-present share) and pays at
terminals within ``radius_km`` of home. Five fraud scenarios are labelled in ``is_fraud``
(0/1) and ``fraud_scenario`` (0 = genuine):

1. amount above a limit (``amount_limit``);
2. compromised terminals: every transaction at the terminal for ``terminal_days`` days;
3. leaked credentials: a third of the customer's transactions for ``customer_days`` days
   become card-not-present and ``leak_multiplier`` x the amount;
4. card testing: bursts of small card-not-present amounts within minutes, far from home;
5. impossible travel: the same card at a terminal > ``travel_min_km`` away minutes after a
   genuine transaction.

Everything is vectorised numpy (loops run over fraud *events*, never over transactions)
and drawn from one ``numpy.random.Generator(seed)``: a seed reproduces the file exactly.

Example:
    >>> table = simulate(SimulatorConfig(n_customers=200, n_terminals=400, n_days=30, seed=1))
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from core.io import write_parquet_atomic

DAY = 86_400


@dataclass
class SimulatorConfig:
    """Scale, profiles and fraud rates. Fraud-event rates are per day per 5,000 customers."""

    n_customers: int = 5000
    n_terminals: int = 10000
    n_days: int = 183
    seed: int = 0
    start_date: str = "2018-04-01"
    radius_km: float = 5.0
    amount_limit: float = 220.0
    terminals_per_day: float = 0.5      # scenario 2 events
    terminal_days: int = 14
    customers_per_day: float = 3.0      # scenario 3 events
    customer_days: int = 14
    leak_multiplier: float = 5.0
    card_tests_per_day: float = 2.0     # scenario 4 events
    travels_per_day: float = 3.0        # scenario 5 events
    travel_min_km: float = 50.0


def _events(R, rate_per_day: float, n_days: int, scale: float) -> np.ndarray:
    """Day index of each fraud event: Poisson(rate * scale) events per day."""
    counts = R.poisson(rate_per_day * scale, n_days)
    return np.repeat(np.arange(n_days), counts)


def _nearby_terminals(customer_xy, terminal_xy, radius):
    """CSR lists of terminals within ``radius`` of each customer (nearest one if none)."""
    from scipy.spatial import cKDTree

    tree = cKDTree(terminal_xy)
    lists = tree.query_ball_point(customer_xy, r=radius, return_sorted=True)
    _, nearest = tree.query(customer_xy, k=1)
    lists = [np.asarray(lst if len(lst) else [nearest[i]], dtype=np.int64) for i, lst in enumerate(lists)]
    counts = np.array([len(lst) for lst in lists], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return np.concatenate(lists), offsets, counts


def _genuine(cfg: SimulatorConfig, R):
    C, T, D = cfg.n_customers, cfg.n_terminals, cfg.n_days
    cust_xy = R.uniform(0, 100, (C, 2))
    mean_amount = R.uniform(5, 100, C)
    std_amount = mean_amount / 2
    rate = R.uniform(0, 4, C)
    hour_center = np.clip(R.normal(13.0, 3.5, C), 6.0, 21.0)
    hour_spread = R.uniform(1.0, 3.0, C)
    cnp_rate = R.beta(2, 10, C)
    term_xy = R.uniform(0, 100, (T, 2))
    flat, offsets, n_near = _nearby_terminals(cust_xy, term_xy, cfg.radius_km)

    per_day = R.poisson(np.repeat(rate, D))                     # (C*D,) customer-major
    cell = np.repeat(np.arange(C * D), per_day)
    cust, day = cell // D, cell % D
    n = cust.size
    secs = np.mod(R.normal(hour_center[cust] * 3600, hour_spread[cust] * 3600), DAY).astype(np.int64)
    amount = R.normal(mean_amount[cust], std_amount[cust])
    negative = amount < 0
    amount[negative] = R.uniform(0, 2 * mean_amount[cust[negative]])
    terminal = flat[offsets[cust] + (R.random(n) * n_near[cust]).astype(np.int64)]
    cnp = R.random(n) < cnp_rate[cust]
    profile = dict(cust_xy=cust_xy, mean_amount=mean_amount, std_amount=std_amount, term_xy=term_xy)
    rows = dict(t=day * DAY + secs, cust=cust, term=terminal, amount=amount, cnp=cnp,
                scenario=np.zeros(n, dtype=np.int8))
    return rows, profile


def _compromised_terminals(cfg, R, rows, scale):
    days = _events(R, cfg.terminals_per_day, cfg.n_days, scale)
    for d, term in zip(days, R.integers(0, cfg.n_terminals, days.size)):
        hit = ((rows["term"] == term) & (rows["t"] >= d * DAY)
               & (rows["t"] < (d + cfg.terminal_days) * DAY) & (rows["scenario"] == 0))
        rows["scenario"][hit] = 2


def _leaked_credentials(cfg, R, rows, scale):
    days = _events(R, cfg.customers_per_day, cfg.n_days, scale)
    victims = R.integers(0, cfg.n_customers, days.size)
    for d, c in zip(days, victims):
        window = np.nonzero((rows["cust"] == c) & (rows["t"] >= d * DAY)
                            & (rows["t"] < (d + cfg.customer_days) * DAY) & (rows["scenario"] == 0))[0]
        hit = window[R.random(window.size) < 1 / 3]
        rows["amount"][hit] *= cfg.leak_multiplier
        rows["cnp"][hit] = True
        rows["scenario"][hit] = 3


def _card_tests(cfg, R, profile, scale) -> dict:
    days = _events(R, cfg.card_tests_per_day, cfg.n_days, scale)
    k = days.size
    burst = R.integers(4, 11, k)                                  # transactions per burst
    event = np.repeat(np.arange(k), burst)
    start = days * DAY + R.integers(0, DAY - 1200, k)
    gaps = R.integers(10, 90, event.size)
    first = np.cumsum(burst) - burst
    within = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[first] - gaps[first], burst)
    return dict(t=start[event] + within, cust=np.repeat(R.integers(0, cfg.n_customers, k), burst),
                term=np.repeat(R.integers(0, cfg.n_terminals, k), burst),
                amount=R.uniform(0.5, 2.5, event.size), cnp=np.ones(event.size, bool),
                scenario=np.full(event.size, 4, np.int8))


def _impossible_travel(cfg, R, rows, profile, scale) -> dict:
    days = _events(R, cfg.travels_per_day, cfg.n_days, scale)
    genuine = np.nonzero(rows["scenario"] == 0)[0]
    anchor = genuine[np.searchsorted(rows["t"][genuine], days * DAY + R.integers(0, DAY, days.size))
                     .clip(0, genuine.size - 1)]
    # 32 candidate terminals per event; take the first one far enough from the anchor's.
    cand = R.integers(0, cfg.n_terminals, (days.size, 32))
    dist = np.linalg.norm(profile["term_xy"][cand] - profile["term_xy"][rows["term"][anchor]][:, None], axis=2)
    far = dist > cfg.travel_min_km
    keep = far.any(axis=1)
    anchor, cand, far = anchor[keep], cand[keep], far[keep]
    cust = rows["cust"][anchor]
    amount = np.abs(R.normal(profile["mean_amount"][cust], profile["std_amount"][cust]))
    return dict(t=rows["t"][anchor] + R.integers(300, 3600, anchor.size), cust=cust,
                term=cand[np.arange(cand.shape[0]), far.argmax(axis=1)], amount=amount,
                cnp=np.zeros(anchor.size, bool), scenario=np.full(anchor.size, 5, np.int8))


def simulate(cfg: SimulatorConfig | None = None):
    """Simulate transactions; returns a ``pyarrow.Table`` sorted by timestamp.

    Columns: ``transaction_id``, ``timestamp``, ``customer_id``, ``terminal_id``, ``amount``,
    ``channel``, ``customer_x``, ``customer_y``, ``terminal_x``, ``terminal_y``, ``is_fraud``,
    ``fraud_scenario``.
    """
    import pyarrow as pa

    cfg = cfg or SimulatorConfig()
    R = np.random.default_rng(cfg.seed)
    scale = cfg.n_customers / 5000
    rows, profile = _genuine(cfg, R)
    order = np.argsort(rows["t"], kind="stable")
    rows = {k: v[order] for k, v in rows.items()}
    rows["scenario"][rows["amount"] > cfg.amount_limit] = 1
    _compromised_terminals(cfg, R, rows, scale)
    _leaked_credentials(cfg, R, rows, scale)
    extra = [_card_tests(cfg, R, profile, scale), _impossible_travel(cfg, R, rows, profile, scale)]
    rows = {k: np.concatenate([rows[k]] + [e[k] for e in extra]) for k in rows}
    order = np.argsort(rows["t"], kind="stable")
    rows = {k: v[order] for k, v in rows.items()}
    rows["t"] = np.minimum(rows["t"], cfg.n_days * DAY - 1)

    n = rows["t"].size
    start = np.datetime64(cfg.start_date, "s")
    cust_ids = np.char.add("C", np.char.zfill(np.arange(cfg.n_customers).astype(str), 6))
    term_ids = np.char.add("T", np.char.zfill(np.arange(cfg.n_terminals).astype(str), 6))
    cxy, txy = profile["cust_xy"][rows["cust"]], profile["term_xy"][rows["term"]]
    return pa.table({
        "transaction_id": pa.array(np.char.add("tx", np.char.zfill(np.arange(n).astype(str), 9))),
        "timestamp": pa.array((start + rows["t"].astype("timedelta64[s]")).astype("datetime64[us]")),
        "customer_id": pa.array(cust_ids[rows["cust"]]),
        "terminal_id": pa.array(term_ids[rows["term"]]),
        "amount": pa.array(np.round(rows["amount"], 2)),
        "channel": pa.array(np.where(rows["cnp"], "card_not_present", "card_present")),
        "customer_x": pa.array(np.round(cxy[:, 0], 3)), "customer_y": pa.array(np.round(cxy[:, 1], 3)),
        "terminal_x": pa.array(np.round(txy[:, 0], 3)), "terminal_y": pa.array(np.round(txy[:, 1], 3)),
        "is_fraud": pa.array((rows["scenario"] > 0).astype(np.int8)),
        "fraud_scenario": pa.array(rows["scenario"]),
    }, metadata={"unmask_simulator": str(asdict(cfg))})


def simulate_to_parquet(path, cfg: SimulatorConfig | None = None):
    """Simulate and write Parquet atomically; returns the path."""

    write_parquet_atomic(simulate(cfg), path)
    return path
