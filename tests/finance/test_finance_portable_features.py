"""Features that carry to other banks: haversine distances, point-in-time for every feature,
refunds as history only, and reason codes in plain words with units."""
import math

import numpy as np
import pandas as pd
import pytest

from finance.features import featurise, feature_names
from finance.mapping import build
from finance.reasons import describe, display_name
from finance.world2 import MAPPING_TOML, World2Config, simulate

WORLD2 = World2Config(n_cards=60, n_merchants=120, n_days=21, seed=11, account_takeovers=15.0,
                      card_tests=15.0, impossible_travels=15.0, amount_bursts=15.0, refund_abuses=10.0,
                      merchant_compromises=5.0)


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bank")
    schema = folder / "bank.toml"
    schema.write_text(MAPPING_TOML)
    frame = simulate(WORLD2).to_pandas()
    return frame, build(schema), folder


def _features(frame, mapping, path):
    frame.to_parquet(path.with_suffix(".tx.parquet"))
    cfg = featurise(path.with_suffix(".tx.parquet"), path, mapping=mapping)
    return cfg, pd.read_parquet(path).set_index("transaction_id").sort_values("_row")


def test_every_feature_is_point_in_time(bank):
    """Appending later rows never changes an earlier transaction's features or context."""
    frame, mapping, folder = bank
    cut = frame["ts"].iloc[len(frame) // 2]
    cfg, past = _features(frame[frame["ts"] < cut], mapping, folder / "past.parquet")
    _, full = _features(frame, mapping, folder / "full.parquet")
    cols = [c for c in past.columns if c != "_row"]
    pd.testing.assert_frame_equal(past[cols], full.loc[past.index, cols], check_exact=False, rtol=1e-9, atol=1e-9)
    new = ["amount_robust_z_30d", "card_sum_1h", "new_terminal_30d", "log_speed_merchant", "rarity_device",
           "rarity_mcc", "card_refunds_7d", "term_cards_24h", "term_amount_vs_median_7d",
           "log_dist_billing_to_shipping"]
    assert set(new) <= set(feature_names(cfg))
    assert all(full[name].std() > 0 for name in new), full[new].std()


def test_haversine_distances_match_known_distances(tmp_path):
    """Degrees give great-circle km: one degree of a meridian and Paris-London."""
    places = {"equator": (0.0, 0.0), "north": (1.0, 0.0), "paris": (48.8566, 2.3522),
              "london": (51.5074, -0.1278)}
    pairs = [("equator", "north"), ("paris", "london")]
    frame = pd.DataFrame({
        "transaction_id": ["a", "b"], "timestamp": ["2024-01-01 10:00", "2024-01-01 11:00"],
        "customer_id": ["c", "d"], "terminal_id": ["t", "u"], "amount": [10.0, 20.0],
        "home_lat": [places[a][0] for a, _ in pairs], "home_lon": [places[a][1] for a, _ in pairs],
        "shop_lat": [places[b][0] for _, b in pairs], "shop_lon": [places[b][1] for _, b in pairs]})
    frame.to_csv(tmp_path / "tx.csv", index=False)
    mapping = build(None, ["location.home=home_lat,home_lon", "location.shop=shop_lat,shop_lon",
                           "locations.units=degrees", "distances=home-shop"])
    featurise(tmp_path / "tx.csv", tmp_path / "f.parquet", mapping=mapping)
    km = pd.read_parquet(tmp_path / "f.parquet").set_index("transaction_id")["ctx_dist_home_to_shop_km"]
    assert km["a"] == pytest.approx(math.pi / 180 * 6371.0088, rel=1e-9)        # 111.195 km
    assert km["b"] == pytest.approx(343.5, abs=1.0)                              # Paris-London


def _refund_file(path, refund: bool):
    rows = pd.DataFrame({
        "transaction_id": ["p1", "p2", "r1", "p3"],
        "timestamp": ["2024-01-01 10:00", "2024-01-02 10:00", "2024-01-02 12:00", "2024-01-03 09:00"],
        "customer_id": ["c"] * 4, "terminal_id": ["t"] * 4, "amount": [40.0, 60.0, -60.0, 50.0]})
    (rows if refund else rows[rows["transaction_id"] != "r1"]).to_csv(path, index=False)
    return path


def test_refunds_are_history_but_never_scored(tmp_path):
    mapping = build(None, [], refunds=True)
    featurise(_refund_file(tmp_path / "with.csv", True), tmp_path / "with.parquet", mapping=mapping)
    featurise(_refund_file(tmp_path / "without.csv", False), tmp_path / "without.parquet", mapping=mapping)
    with_refund = pd.read_parquet(tmp_path / "with.parquet").set_index("transaction_id")
    without = pd.read_parquet(tmp_path / "without.parquet").set_index("transaction_id")
    assert list(with_refund.index) == ["p1", "p2", "p3"]                # the refund is not a scored row
    assert with_refund.loc["p3", "ctx_card_refunds_7d"] == 1 and without.loc["p3", "ctx_card_refunds_7d"] == 0
    assert with_refund.loc["p3", "ctx_gap_s"] == 21 * 3600              # the refund is the previous transaction
    # the amount history skips the refund: the median of 40 and 60, not of 40, 60 and -60
    assert with_refund.loc["p3", "ctx_card_median_30d"] == without.loc["p3", "ctx_card_median_30d"] == 50


def test_reason_codes_are_plain_words_with_units(bank):
    _, mapping, folder = bank
    cfg, full = _features(bank[0], mapping, folder / "words.parquet")
    for name in feature_names(cfg):                # one display table covers every feature
        assert display_name(name) != name or name in ("amount",), name
    row = {"amount": 415.0, "ctx_card_median_30d": 10.0, "ctx_card_n_1h": 7.0, "ctx_card_n_30d": 144.0,
           "ctx_move_merchant_km": 812.3, "ctx_gap_s": 120.0, "ctx_cat_mcc": "5732",
           "ctx_card_cat_n_mcc": 0.0, "ctx_card_all_n_30d": 25.0}
    assert describe("amount_vs_median_30d", row)[2] == "amount 41.5x the card's 30-day median (415.00 vs 10.00)"
    assert describe("card_count_1h", row)[2] == "7 transactions by this card in the last hour (usual: 0.2)"
    assert "812.3 km" in describe("log_speed_merchant", row)[2] and "km/h" in describe("log_speed_merchant", row)[2]
    assert describe("rarity_mcc", row)[2] == "mcc '5732' in 0 of this card's 25 transactions in the last 30 days"
    assert np.isfinite(full[feature_names(cfg)].to_numpy()).all()
