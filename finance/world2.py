"""A second world: another bank's columns, codings, population and fraud.

Nothing here copies :mod:`finance.simulator`'s mechanics, so a detector tuned on that world
can be checked on this one. The bank's file has its own names and codings::

    txn, ts (UTC), card, merchant, amt, entry_mode (CNP / CP), bill_lat, bill_lon,
    ship_lat, ship_lon, merch_lat, merch_lon (degrees), mcc, device, fraud (Y / N), pattern

Population: cards live in ``n_cities`` cities of very different sizes (lat/lon in Europe);
each card has a daily rate, a log-normal amount profile, a share of online (card-not-present)
spending, a lunch/evening time-of-day habit, one or two devices, sometimes a second shipping
address, favourite shops in its city, and sometimes a legitimate trip to another city.
Merchants have a merchant category code (MCC) that scales amounts; online merchants sit at a
head office. About 1 % of purchases are refunded days later (negative ``amt``).

Fraud (``fraud = "Y"``, the mechanic in ``pattern``), rates per day per 1,000 cards:

* ``account_takeover``: card-not-present purchases over 1-48 h from a new device, shipped to
  a new address, several times the card's usual amount;
* ``card_testing``: 4-15 tiny online payments minutes apart from a new device;
* ``merchant_compromise``: a shop where, for a few days, cloned cards from anywhere pay
  (mostly by magnetic stripe) at 2-6x the shop's usual amount;
* ``impossible_travel``: a card-present payment > 500 km from the card's previous one
  10-120 minutes earlier;
* ``amount_burst``: a stolen card used at 3-7 shops of its city within two hours, 3-12x
  its usual amount;
* ``refund_abuse``: purchase-then-refund cycles at online shops over 1-3 days.

Example:
    >>> table = simulate(World2Config(n_cards=100, n_merchants=200, n_days=20, seed=1))
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from core.io import atomic_path, write_parquet_atomic, write_text_atomic

DAY = 86_400
HOUR = 3600
MCC = {  # code: (amount factor, share among shops, share among online merchants)
    "5411": (0.7, 0.25, 0.02), "5812": (0.9, 0.2, 0.0), "5541": (1.4, 0.1, 0.0),
    "5912": (0.6, 0.08, 0.03), "5651": (1.8, 0.1, 0.15), "5732": (4.0, 0.04, 0.15),
    "5999": (1.0, 0.1, 0.2), "5814": (0.4, 0.13, 0.0), "4511": (8.0, 0.0, 0.1),
    "7011": (5.0, 0.0, 0.1), "5818": (0.3, 0.0, 0.2), "4121": (0.8, 0.0, 0.05),
}
CP_DEVICES = ("chip", "contactless", "swipe")
MAPPING_TOML = '''# world2's columns and codings (unmask finance train --schema-file)
[columns]
id = "txn"
time = "ts"
card = "card"
merchant = "merchant"
amount = "amt"
channel = "entry_mode"
label = "fraud"

[channel]
card_not_present = ["CNP"]
card_present = ["CP"]

[label]
fraud = ["Y"]
genuine = ["N"]

[locations]
units = "degrees"
billing = ["bill_lat", "bill_lon"]
shipping = ["ship_lat", "ship_lon"]
merchant = ["merch_lat", "merch_lon"]
distances = [["billing", "merchant"], ["billing", "shipping"]]
travel = ["merchant", "shipping"]

[features]
categorical = ["mcc", "device"]

[amount]
refunds = true
'''


@dataclass
class World2Config:
    """Scale, population and fraud rates (events per day per 1,000 cards)."""

    n_cards: int = 1000
    n_merchants: int = 2000
    n_days: int = 60
    seed: int = 0
    start_date: str = "2024-03-01"
    n_cities: int = 25
    online_merchant_share: float = 0.3
    refund_share: float = 0.01
    trip_share: float = 0.15
    account_takeovers: float = 0.8
    card_tests: float = 0.6
    merchant_compromises: float = 0.15
    impossible_travels: float = 0.8
    amount_bursts: float = 0.6
    refund_abuses: float = 0.3


def _events(R, rate, cfg) -> np.ndarray:
    """Start times (s) of Poisson(rate * cards / 1000) events per day, after day 2."""
    counts = R.poisson(rate * cfg.n_cards / 1000, cfg.n_days)
    days = np.repeat(np.arange(cfg.n_days), counts)
    days = days[days >= 2]
    return days * DAY + R.integers(0, DAY, days.size)


def _fraud_events(R, rate, cfg, fewest: int, most: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fraud events of ``fewest`` to ``most`` transactions each (:func:`_events`' rate): their
    start times ``(E,)``, transaction counts ``k`` ``(E,)`` and each transaction's event
    ``(sum(k),)``."""
    start = _events(R, rate, cfg)
    k = R.integers(fewest, most + 1, start.size)
    return start, k, np.repeat(np.arange(start.size), k)


def _world(cfg: World2Config, R) -> dict:
    """Cities, cards and merchants."""
    C, M = cfg.n_cards, cfg.n_merchants
    city_ll = np.column_stack([R.uniform(37, 59, cfg.n_cities), R.uniform(-8, 28, cfg.n_cities)])
    city_w = 1 / np.arange(1, cfg.n_cities + 1) ** 1.1
    city_w /= city_w.sum()
    card_city = R.choice(cfg.n_cities, C, p=city_w)
    online = R.random(M) < cfg.online_merchant_share
    codes = np.array(list(MCC))
    shop_p, web_p = (np.array([v[i] for v in MCC.values()]) for i in (1, 2))
    mcc = np.where(online, R.choice(codes, M, p=web_p / web_p.sum()), R.choice(codes, M, p=shop_p / shop_p.sum()))
    merch_city = R.choice(cfg.n_cities, M, p=city_w)
    merch_ll = city_ll[merch_city] + R.normal(0, 0.05, (M, 2))
    factor = np.array([MCC[c][0] for c in mcc]) * R.lognormal(0, 0.3, M)
    bill = city_ll[card_city] + R.normal(0, 0.08, (C, 2))
    ship2 = bill + R.normal(0, 0.1, (C, 2))
    has_ship2 = R.random(C) < 0.2
    shops = np.nonzero(~online)[0]
    webs = np.nonzero(online)[0]
    by_city = [shops[merch_city[shops] == c] for c in range(cfg.n_cities)]
    favourites = np.stack([R.choice(by_city[c] if by_city[c].size else shops, 12) for c in card_city])
    web_favourites = R.choice(webs, (C, 6))
    n_devices = 1 + (R.random(C) < 0.4)
    device_ids = np.char.add("dev-", R.integers(0, 16 ** 8, (C, 2)).astype("U10"))
    return dict(city_ll=city_ll, city_w=city_w, card_city=card_city, online=online, mcc=mcc,
                merch_city=merch_city, merch_ll=merch_ll, factor=factor, bill=bill, ship2=ship2,
                has_ship2=has_ship2, shops=shops, webs=webs, by_city=by_city, favourites=favourites,
                web_favourites=web_favourites, n_devices=n_devices, device_ids=device_ids,
                rate=R.lognormal(0.1, 0.6, C), median=R.lognormal(3.2, 0.7, C), sigma=R.uniform(0.4, 0.9, C),
                online_share=R.beta(2, 4, C), lunch=R.normal(12.5, 0.7, C), evening=R.normal(19.5, 1.2, C),
                evening_w=R.uniform(0.3, 0.8, C))


def _rows(n):
    return dict(t=np.zeros(n, np.int64), card=np.zeros(n, np.int64), merchant=np.zeros(n, np.int64),
                amt=np.zeros(n), cnp=np.zeros(n, bool), ship=np.zeros((n, 2)), device=np.zeros(n, "U12"),
                pattern=np.full(n, "", "U20"))


def _genuine(cfg: World2Config, w: dict, R) -> dict:
    C, D = cfg.n_cards, cfg.n_days
    weekday = (np.arange(D) + 4) % 7            # 2024-03-01 was a Friday
    day_factor = np.where(weekday >= 5, 1.3, 0.95)
    per = R.poisson(np.outer(w["rate"], day_factor).ravel())
    cell = np.repeat(np.arange(C * D), per)
    card, day = cell // D, cell % D
    n = card.size
    rows = _rows(n)
    hour = np.where(R.random(n) < w["evening_w"][card], R.normal(w["evening"][card], 1.5),
                    R.normal(w["lunch"][card], 1.0)) + np.where(weekday[day] >= 5, 1.0, 0.0)
    rows["t"] = day * DAY + (np.mod(hour, 24) * HOUR).astype(np.int64)
    rows["card"] = card
    cnp = R.random(n) < w["online_share"][card]
    shop = w["favourites"][card, np.minimum((12 * R.random(n) ** 2).astype(int), 11)]
    web = w["web_favourites"][card, R.integers(0, 6, n)]
    rows["merchant"] = np.where(cnp, web, shop)
    trip = _trips(cfg, w, R, card, day)
    away = (trip >= 0) & ~cnp
    local = [w["by_city"][c] for c in range(cfg.n_cities)]
    rows["merchant"][away] = [R.choice(local[c]) if local[c].size else R.choice(w["shops"]) for c in trip[away]]
    rows["cnp"] = cnp
    rows["amt"] = w["median"][card] * w["factor"][rows["merchant"]] * R.lognormal(0, w["sigma"][card])
    use2 = w["has_ship2"][card] & (R.random(n) < 0.5) & cnp
    rows["ship"] = np.where(use2[:, None], w["ship2"][card], w["bill"][card])
    dev = w["device_ids"][card, (R.random(n) * w["n_devices"][card]).astype(int)]
    rows["device"] = np.where(cnp, dev, R.choice(CP_DEVICES, n, p=[0.45, 0.5, 0.05]))
    return rows


def _trips(cfg, w, R, card, day) -> np.ndarray:
    """The city a card travels to on each row's day (-1 = at home)."""
    C = cfg.n_cards
    travels = R.random(C) < cfg.trip_share
    start = R.integers(0, max(cfg.n_days - 5, 1), C)
    length = R.integers(2, 6, C)
    dest = R.choice(cfg.n_cities, C, p=w["city_w"])
    on = travels[card] & (day >= start[card]) & (day < start[card] + length[card]) & (dest[card] != w["card_city"][card])
    return np.where(on, dest[card], -1)


def _fraud(kind, t, card, merchant, amt, cnp, ship, device) -> dict:
    n = np.size(t)
    rows = _rows(n)
    rows.update(t=np.asarray(t, np.int64), card=np.asarray(card), merchant=np.asarray(merchant),
                amt=np.asarray(amt, float), cnp=np.broadcast_to(cnp, n).copy(), ship=np.asarray(ship),
                device=np.asarray(device, "U12"), pattern=np.full(n, kind, "U20"))
    return rows


def _new_device(R, n):
    return np.char.add("dev-", R.integers(0, 16 ** 8, n).astype("U10"))


def _account_takeovers(cfg, w, R):
    start, _, ev = _fraud_events(R, cfg.account_takeovers, cfg, 2, 6)
    victim = R.integers(0, cfg.n_cards, start.size)
    address = w["city_ll"][R.integers(0, cfg.n_cities, start.size)] + R.normal(0, 0.2, (start.size, 2))
    webs = w["webs"][np.isin(w["mcc"][w["webs"]], ["5732", "5651", "5999", "5818"])]
    merchant = R.choice(webs if webs.size else w["webs"], ev.size)
    return _fraud("account_takeover", start[ev] + R.integers(0, 48 * HOUR, ev.size), victim[ev], merchant,
                  w["median"][victim[ev]] * w["factor"][merchant] * R.uniform(3, 10, ev.size), True,
                  address[ev], _new_device(R, start.size)[ev])


def _card_tests(cfg, w, R):
    start, k, ev = _fraud_events(R, cfg.card_tests, cfg, 4, 15)
    victim = R.integers(0, cfg.n_cards, start.size)
    step = R.integers(30, 300, ev.size)
    first = np.cumsum(k) - k
    offset = np.cumsum(step) - np.repeat(np.cumsum(step)[first] - step[first], k)
    merchant = R.choice(w["webs"], (start.size, 2))[ev, R.integers(0, 2, ev.size)]
    return _fraud("card_testing", start[ev] + offset, victim[ev], merchant, R.uniform(0.5, 4, ev.size).round(2),
                  True, w["bill"][victim[ev]], _new_device(R, start.size)[ev])


def _merchant_compromises(cfg, w, R):
    start, _, ev = _fraud_events(R, cfg.merchant_compromises, cfg, 5, 20)
    shop = R.choice(w["shops"], start.size)
    card = R.integers(0, cfg.n_cards, ev.size)
    when = start[ev] + R.integers(0, R.integers(2, 6, start.size)[ev] * DAY)
    amount = np.exp(np.log(w["median"]).mean()) * w["factor"][shop[ev]] * R.uniform(2, 6, ev.size)
    device = np.where(R.random(ev.size) < 0.7, "swipe", "chip")
    return _fraud("merchant_compromise", when, card, shop[ev], amount, False, w["bill"][card], device)


def _impossible_travels(cfg, w, R, genuine):
    start = _events(R, cfg.impossible_travels, cfg)
    shop_rows = np.nonzero(~genuine["cnp"])[0]
    anchor = shop_rows[np.searchsorted(genuine["t"][shop_rows], start).clip(0, shop_rows.size - 1)]
    card = genuine["card"][anchor]
    here = w["merch_ll"][genuine["merchant"][anchor]]
    cand = R.choice(w["shops"], (anchor.size, 32))
    far = _km(here[:, None, :], w["merch_ll"][cand]) > 500
    keep = far.any(axis=1)
    anchor, card, cand, far = anchor[keep], card[keep], cand[keep], far[keep]
    shop = cand[np.arange(cand.shape[0]), far.argmax(axis=1)]
    return _fraud("impossible_travel", genuine["t"][anchor] + R.integers(600, 7200, anchor.size), card, shop,
                  w["median"][card] * w["factor"][shop] * R.uniform(1, 4, anchor.size), False, w["bill"][card],
                  np.where(R.random(anchor.size) < 0.5, "swipe", "chip"))


def _amount_bursts(cfg, w, R):
    start, _, ev = _fraud_events(R, cfg.amount_bursts, cfg, 3, 7)
    victim = R.integers(0, cfg.n_cards, start.size)
    local = [w["by_city"][c] if w["by_city"][c].size else w["shops"] for c in w["card_city"][victim]]
    shop = np.array([R.choice(local[e]) for e in ev], dtype=np.int64)
    return _fraud("amount_burst", start[ev] + R.integers(0, 2 * HOUR, ev.size), victim[ev], shop,
                  w["median"][victim[ev]] * w["factor"][shop] * R.uniform(3, 12, ev.size), False,
                  w["bill"][victim[ev]], np.where(R.random(ev.size) < 0.8, "contactless", "chip"))


def _refund_abuses(cfg, w, R):
    start, _, ev = _fraud_events(R, cfg.refund_abuses, cfg, 3, 6)
    abuser = R.integers(0, cfg.n_cards, start.size)
    web = R.choice(w["webs"], ev.size)
    t = start[ev] + R.integers(0, 3 * DAY, ev.size)
    amount = w["median"][abuser[ev]] * w["factor"][web] * R.uniform(2, 5, ev.size)
    device = w["device_ids"][abuser[ev], 0]
    buy = _fraud("refund_abuse", t, abuser[ev], web, amount, True, w["bill"][abuser[ev]], device)
    back = _fraud("refund_abuse", t + R.integers(600, 2 * HOUR, ev.size), abuser[ev], web, -amount, True,
                  w["bill"][abuser[ev]], device)
    return [buy, back]


def _refunds(cfg, rows, R) -> dict:
    """Genuine refunds: a share of purchases returned 1-10 days later at the same merchant."""
    pick = np.nonzero(R.random(rows["t"].size) < cfg.refund_share)[0]
    out = {k: v[pick].copy() for k, v in rows.items()}
    out["t"] = out["t"] + R.integers(DAY, 10 * DAY, pick.size)
    out["amt"] = -out["amt"]
    return out


def _km(a, b) -> np.ndarray:
    """Great-circle km between (lat, lon) degree arrays (last axis)."""
    a, b = np.radians(a), np.radians(b)
    h = (np.sin((b[..., 0] - a[..., 0]) / 2) ** 2
         + np.cos(a[..., 0]) * np.cos(b[..., 0]) * np.sin((b[..., 1] - a[..., 1]) / 2) ** 2)
    return 2 * 6371.0088 * np.arcsin(np.sqrt(np.minimum(h, 1)))


def simulate(cfg: World2Config | None = None):
    """Simulate world 2; returns a ``pyarrow.Table`` in time order (columns: module docstring)."""
    import pyarrow as pa

    cfg = cfg or World2Config()
    R = np.random.default_rng(cfg.seed)
    w = _world(cfg, R)
    genuine = _genuine(cfg, w, R)
    order = np.argsort(genuine["t"], kind="stable")
    genuine = {k: v[order] for k, v in genuine.items()}
    parts = [genuine, _refunds(cfg, genuine, R), _account_takeovers(cfg, w, R), _card_tests(cfg, w, R),
             _merchant_compromises(cfg, w, R), _impossible_travels(cfg, w, R, genuine),
             _amount_bursts(cfg, w, R), *_refund_abuses(cfg, w, R)]
    rows = {k: np.concatenate([p[k] for p in parts]) for k in genuine}
    keep = rows["t"] < cfg.n_days * DAY
    order = np.argsort(rows["t"][keep], kind="stable")
    rows = {k: v[keep][order] for k, v in rows.items()}
    n = rows["t"].size
    start = np.datetime64(cfg.start_date, "s")
    merch_ll, bill = w["merch_ll"][rows["merchant"]], w["bill"][rows["card"]]
    fraud = rows["pattern"] != ""
    return pa.table({
        "txn": pa.array(np.char.add("W2-", np.char.zfill(np.arange(n).astype(str), 8))),
        "ts": pa.array((start + rows["t"].astype("timedelta64[s]")).astype("datetime64[us]"),
                       pa.timestamp("us", tz="UTC")),
        "card": pa.array(np.char.add("card-", np.char.zfill(rows["card"].astype(str), 5))),
        "merchant": pa.array(np.char.add("m-", np.char.zfill(rows["merchant"].astype(str), 5))),
        "amt": pa.array(np.round(rows["amt"], 2)),
        "entry_mode": pa.array(np.where(rows["cnp"], "CNP", "CP")),
        "bill_lat": pa.array(bill[:, 0].round(5)), "bill_lon": pa.array(bill[:, 1].round(5)),
        "ship_lat": pa.array(rows["ship"][:, 0].round(5)), "ship_lon": pa.array(rows["ship"][:, 1].round(5)),
        "merch_lat": pa.array(merch_ll[:, 0].round(5)), "merch_lon": pa.array(merch_ll[:, 1].round(5)),
        "mcc": pa.array(w["mcc"][rows["merchant"]]),
        "device": pa.array(rows["device"]),
        "fraud": pa.array(np.where(fraud, "Y", "N")),
        "pattern": pa.array(rows["pattern"]),
    }, metadata={"unmask_world2": str(asdict(cfg))})


def simulate_to_file(path, cfg: World2Config | None = None) -> tuple[Path, Path]:
    """Simulate and write Parquet (or CSV, by suffix: ``ts`` as ISO text with ``Z``)
    atomically, and the mapping beside it (``NAME.schema.toml``); returns both paths."""

    path = Path(path)
    table = simulate(cfg)
    if path.suffix.lower() == ".csv":
        frame = table.to_pandas()
        frame["ts"] = frame["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
    else:
        write_parquet_atomic(table, path)
    mapping = path.with_name(path.stem + ".schema.toml")
    write_text_atomic(mapping, MAPPING_TOML)
    return path, mapping
