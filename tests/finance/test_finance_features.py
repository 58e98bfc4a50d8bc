"""Point-in-time features and the feedback delay (no leakage)."""
import numpy as np
import pandas as pd

from finance.features import FeatureConfig, feature_names, featurise
from finance.feedback import labels_from_truth


def _features(path, out, **kwargs):
    featurise(path, out, **kwargs)
    return pd.read_parquet(out).sort_values("_row").set_index("transaction_id")


def test_appending_future_rows_never_changes_earlier_features(small_frame, tmp_path):
    cut = small_frame["timestamp"].iloc[len(small_frame) // 2]
    past = small_frame[small_frame["timestamp"] < cut]
    past.to_parquet(tmp_path / "past.parquet")
    a = _features(tmp_path / "past.parquet", tmp_path / "fa.parquet")
    b = _features(_write(small_frame, tmp_path / "all.parquet"), tmp_path / "fb.parquet").loc[a.index]
    cols = [c for c in a.columns if c != "_row"]
    pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=False, rtol=1e-9, atol=1e-9)
    # The features are not trivially constant.
    assert a["card_count_7d"].std() > 0 and a["amount_vs_median_30d"].std() > 0


def _write(frame, path):
    frame.to_parquet(path)
    return path


def test_features_ignore_is_fraud(small_frame, tmp_path):
    flipped = small_frame.assign(is_fraud=1 - small_frame["is_fraud"], fraud_scenario=0)
    a = _features(_write(small_frame, tmp_path / "a.parquet"), tmp_path / "fa.parquet")
    b = _features(_write(flipped, tmp_path / "b.parquet"), tmp_path / "fb.parquet")
    names = feature_names(_cfg(a))
    pd.testing.assert_frame_equal(a[names], b[names])


def _cfg(frame):
    return FeatureConfig()


def test_feedback_respects_the_delay(small_frame, small_tx, tmp_path):
    labels = labels_from_truth(small_frame)
    feats = _features(small_tx, tmp_path / "f.parquet", labels=labels, feedback_delay_days=7)
    assert feats["terminal_confirmed_fraud_28d"].max() > 0
    # One extra fraud confirmation at time c on terminal T / customer C changes only
    # transactions later than c + 7 days, at T (terminal features) or of C (card features).
    genuine = small_frame[small_frame["is_fraud"] == 0].iloc[len(small_frame) // 3]
    confirmed = genuine["timestamp"] + pd.Timedelta(hours=5)
    extra = pd.concat([labels, pd.DataFrame({"transaction_id": [genuine["transaction_id"]],
                                             "confirmed_at": [confirmed], "is_fraud": [True]})])
    more = _features(small_tx, tmp_path / "g.parquet", labels=extra, feedback_delay_days=7)
    more = more.loc[feats.index]
    term_changed = feats["terminal_confirmed_fraud_28d"] != more["terminal_confirmed_fraud_28d"]
    cust_changed = feats["customer_confirmed_fraud_28d"] != more["customer_confirmed_fraud_28d"]
    assert term_changed.any() and cust_changed.any()
    assert (more.loc[term_changed, "timestamp"] > confirmed + pd.Timedelta(days=7)).all()
    assert (more.loc[term_changed, "terminal_id"] == genuine["terminal_id"]).all()
    assert (more.loc[cust_changed, "timestamp"] > confirmed + pd.Timedelta(days=7)).all()
    assert (more.loc[cust_changed, "customer_id"] == genuine["customer_id"]).all()
    others = [c for c in feats.columns if "confirmed" not in c and c != "_row"]
    pd.testing.assert_frame_equal(feats[others], more[others])


def test_feedback_never_sees_own_label_or_recent_confirmations(small_frame, small_tx, tmp_path):
    # Every fraud confirmed the instant it happens; with a 7-day delay, the count a
    # transaction sees equals the frauds at its terminal that happened 7-35 days before it.
    labels = labels_from_truth(small_frame)
    feats = _features(small_tx, tmp_path / "f.parquet", labels=labels, feedback_delay_days=7)
    sample = feats.iloc[:: max(1, len(feats) // 300)]
    fraud = small_frame[small_frame["is_fraud"] == 1]
    for _, row in sample.iterrows():
        lo = row["timestamp"] - pd.Timedelta(days=35)
        hi = row["timestamp"] - pd.Timedelta(days=7)
        expected = ((fraud["terminal_id"] == row["terminal_id"]) & (fraud["timestamp"] >= lo)
                    & (fraud["timestamp"] < hi)).sum()
        assert row["ctx_terminal_confirmed_fraud_28d"] == expected
    assert np.isfinite(feats[[c for c in feats.columns if c.startswith(("log_", "amount_", "cust_"))]]).all().all()
