"""Bring your own schema: another bank's file (world 2's names and codings) through the CLI
with a TOML mapping saved in the bundle; bad values in that coding as one line each."""
import json

import numpy as np
import pandas as pd
import pytest

from core.errors import DataValidationError
from finance.detector import FinanceModel
from finance.mapping import build
from finance.world2 import World2Config, simulate_to_file
from finance_cli_runner import run_cli as _cli

TINY_WORLD2 = World2Config(n_cards=40, n_merchants=80, n_days=14, seed=5, account_takeovers=20.0,
                           card_tests=20.0, amount_bursts=20.0, refund_abuses=10.0)
# Written here, not taken from finance.world2: the test states the bank's coding itself.
MAPPING = """
columns = {id = "txn", time = "ts", card = "card", merchant = "merchant", amount = "amt"}
entry_mode = "entry_mode"   # aliases of the roles work at the top level too
is_fraud = "fraud"
channel = {card_not_present = ["CNP"], card_present = ["CP"]}
label = {fraud = ["Y"], genuine = ["N"]}
amount = {refunds = true}
features = {categorical = ["mcc", "device"]}
locations.units = "degrees"
locations.billing = ["bill_lat", "bill_lon"]
locations.shipping = ["ship_lat", "ship_lon"]
locations.merchant = ["merch_lat", "merch_lon"]
distances = [["billing", "merchant"], ["billing", "shipping"]]
travel = ["merchant"]
"""


@pytest.fixture(scope="module")
def world2(tmp_path_factory):
    """(CSV file in world 2's coding, its frame, the TOML mapping, a model trained on it via the CLI)."""
    folder = tmp_path_factory.mktemp("world2")
    data, _ = simulate_to_file(folder / "bank.csv", TINY_WORLD2)
    schema = folder / "bank.toml"
    schema.write_text(MAPPING)
    model = folder / "model"
    code, stdout, stderr = _cli("finance", "train", "--data", str(data), "--schema-file", str(schema),
                                "--out", str(model), "--max-steps", "20", "--until", "2024-03-11")
    assert code == 0, stderr
    return data, pd.read_csv(data, dtype=str), schema, model


def test_foreign_schema_trains_and_scores_end_to_end_through_the_cli(world2, tmp_path):
    data, frame, _, model = world2
    saved = FinanceModel.load(model).config.features.mapping
    assert saved["columns"]["amount"] == "amt" and saved["units"] == "degrees"
    assert saved["card_not_present"] == ["CNP"] and saved["refunds"] is True
    # score gets no mapping: it reads the bank's file through the one saved in the bundle
    out = tmp_path / "scores.parquet"
    code, stdout, stderr = _cli("finance", "score", "--model", str(model), "--data", str(data), "--out", str(out),
                                "--budget", "10", "--max-shap", "3")
    assert code == 0, stderr
    scores = pd.read_parquet(out)
    purchases = frame[frame["amt"].astype(float) >= 0]
    assert sorted(scores["transaction_id"]) == sorted(purchases["txn"])      # refunds never scored
    truth = scores.set_index("transaction_id")["is_fraud"]
    assert (truth == (purchases.set_index("txn")["fraud"] == "Y").astype(int).loc[truth.index]).all()
    summary = json.loads(stdout)
    assert summary["auroc"] > 0.6
    texts = scores.loc[scores["is_alert"], "reason_1_text"].dropna()
    assert len(texts) == 10 and not texts.str.contains("_").any()           # plain words, not names
    # the bundle's feature list uses the bank's locations and categories
    names = FinanceModel.load(model).feature_names
    assert {"log_dist_billing_to_merchant", "log_dist_billing_to_shipping", "rarity_mcc", "rarity_device",
            "log_speed_merchant", "card_refunds_7d", "card_not_present"} <= set(names)


def test_foreign_schema_is_evaluated_through_the_same_mapping(world2, tmp_path):
    """train -> score -> evaluate on the bank's own file: evaluate reads it through the
    model's saved mapping (or the same TOML), not through unmask's own column names."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    data, frame, schema, model = world2
    out = tmp_path / "scores.parquet"
    code, _, stderr = _cli("finance", "score", "--model", str(model), "--data", str(data), "--out", str(out),
                           "--budget", "10", "--max-shap", "0")
    assert code == 0, stderr
    scores = pd.read_parquet(out)
    truth = (frame.set_index("txn")["fraud"] == "Y").astype(int).loc[scores["transaction_id"]].to_numpy()
    for how in (["--model", str(model)], ["--schema-file", str(schema)]):
        code, stdout, stderr = _cli("finance", "evaluate", "--scores", str(out), "--data", str(data), *how)
        assert code == 0, (how, stderr)
        metrics = json.loads(stdout)
        assert metrics["n_transactions"] == len(scores) and metrics["n_fraud"] == truth.sum() > 0
        assert metrics["auroc"] == pytest.approx(roc_auc_score(truth, scores["score"]), abs=1e-9)
        assert metrics["average_precision"] == pytest.approx(average_precision_score(truth, scores["score"]),
                                                             abs=1e-9)
    # without the mapping the bank's file has none of unmask's own columns: one line, not a traceback
    code, _, stderr = _cli("finance", "evaluate", "--scores", str(out), "--data", str(data))
    assert code == 2 and stderr.count("\n") == 1 and "'transaction_id'" in stderr, stderr
    code, _, stderr = _cli("finance", "evaluate", "--scores", str(out), "--data", str(data),
                           "--model", str(model), "--map", "card=card")
    assert code == 2 and "not both" in stderr, stderr


def test_map_options_build_the_same_mapping_as_the_toml(world2):
    _, _, schema, _ = world2
    from_cli = build(None, ["id=txn", "time=ts", "card=card", "merchant=merchant", "amount=amt",
                            "channel=entry_mode", "label=fraud", "channel.card_not_present=CNP",
                            "channel.card_present=CP", "label.fraud=Y", "label.genuine=N",
                            "locations.units=degrees", "location.billing=bill_lat,bill_lon",
                            "location.shipping=ship_lat,ship_lon", "location.merchant=merch_lat,merch_lon",
                            "distances=billing-merchant,billing-shipping", "travel=merchant",
                            "categorical=mcc,device", "refunds=true"])
    assert from_cli == build(schema)


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _edit(frame, column, row, value):
    frame = frame.copy()
    frame.loc[row, column] = value
    return frame


BAD = [  # id, change to the bank's frame, words the one error line must hold
    ("unknown-channel", lambda f: _edit(f, "entry_mode", 4, "ECOM"),
     ["'entry_mode'", "row 5", "'ECOM'", "values seen", "'CNP'", "'CP'"]),
    ("mapped-column-absent", lambda f: f.drop(columns="mcc"), ["'mcc'", "categorical"]),
    ("nan-coordinate", lambda f: _edit(f, "bill_lat", 2, "nan"), ["'bill_lat'", "row 3", "'nan'"]),
    ("inf-coordinate", lambda f: _edit(f, "merch_lon", 7, "-inf"), ["'merch_lon'", "row 8", "'-inf'"]),
    ("latitude-out-of-range", lambda f: _edit(f, "ship_lat", 3, "123.5"), ["'ship_lat'", "row 4", "latitude"]),
    ("label-yes", lambda f: _edit(f, "fraud", 0, "yes"), ["'fraud'", "row 1", "'yes'", "'Y'", "'N'"]),
]


@pytest.mark.parametrize("case, change, words", BAD, ids=[b[0] for b in BAD])
def test_bad_values_in_the_banks_coding_are_one_line_and_write_nothing(world2, tmp_path, case, change, words):
    _, frame, _, model = world2
    data = tmp_path / "bank.csv"
    change(frame).to_csv(data, index=False)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "scores.parquet").write_bytes(b"yesterday's scores")
    before = _snapshot(out_dir)
    code, _, stderr = _cli("finance", "score", "--model", str(model), "--data", str(data),
                           "--out", str(out_dir / "scores.parquet"), "--budget", "3", "--max-shap", "0")
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("Error: "), stderr
    assert str(data) in lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert _snapshot(out_dir) == before


def test_training_with_a_column_the_file_lacks_is_one_line_and_writes_nothing(world2, tmp_path):
    data = world2[0]
    code, _, stderr = _cli("finance", "train", "--data", str(data), "--map", "card=card_number",
                           "--out", str(tmp_path / "m"))
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert str(data) in stderr and "'card_number'" in stderr
    assert not (tmp_path / "m").exists()


def test_unknown_mapping_key_is_one_line():
    with pytest.raises(DataValidationError, match="unknown mapping key 'colour'"):
        build(None, ["colour=red"])
    with pytest.raises(DataValidationError, match="distance"):
        build(None, ["distances=home-moon"])
