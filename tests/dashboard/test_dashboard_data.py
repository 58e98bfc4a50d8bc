"""The dashboard's plain data functions, checked against pandas on the synthetic workspace."""
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from core.errors import DataValidationError
from core.review_store import ReviewStore
from dashboard import driving_data, finance_data, medical_data, render, workspace as wsmod
from dashboard_fixtures import EXPECTED_SCORE, FEATURES


@pytest.fixture(scope="module")
def scores_path(synthetic_workspace):
    return synthetic_workspace / "runs" / "finance" / "finance-run" / "scores.parquet"


@pytest.fixture(scope="module")
def scores(scores_path):
    return pd.read_parquet(scores_path)


# --- finance ---------------------------------------------------------------------------

def test_queue_default_is_alerts_by_rank(scores_path, scores):
    page, total = finance_data.queue_page(scores_path, finance_data.QueueQuery(page_size=7))
    alerts = scores[scores["is_alert"]].sort_values("rank")
    assert total == len(alerts) == 20
    assert page["transaction_id"].tolist() == alerts["transaction_id"].head(7).tolist()
    assert list(page.columns) == list(finance_data.QUEUE_COLUMNS)


def test_queue_filters_sort_and_pages_match_pandas(scores_path, scores):
    query = finance_data.QueueQuery(alerts_only=False, start=dt.date(2026, 1, 5),
                                    end=dt.date(2026, 1, 20), min_amount=10.0, max_amount=80.0,
                                    sort="amount", descending=True, page=2, page_size=15)
    page, total = finance_data.queue_page(scores_path, query)
    day = scores["timestamp"].dt.date
    expected = scores[(day >= dt.date(2026, 1, 5)) & (day <= dt.date(2026, 1, 20))
                      & scores["amount"].between(10.0, 80.0)]
    expected = expected.sort_values(["amount", "rank"], ascending=[False, True])
    assert total == len(expected) > 30
    assert page["transaction_id"].tolist() == expected["transaction_id"].iloc[15:30].tolist()


def test_queue_score_and_p_value_thresholds(scores_path, scores):
    _, by_score = finance_data.queue_page(
        scores_path, finance_data.QueueQuery(alerts_only=False, min_score=0.3))
    _, by_p = finance_data.queue_page(
        scores_path, finance_data.QueueQuery(alerts_only=False, max_p_value=0.1))
    assert by_score == int((scores["score"] >= 0.3).sum())
    assert by_p == int((scores["p_value"] <= 0.1).sum())


def test_queue_last_partial_page_and_bad_sort(scores_path):
    page, total = finance_data.queue_page(scores_path, finance_data.QueueQuery(page=3, page_size=8))
    assert total == 20 and len(page) == 4
    with pytest.raises(DataValidationError, match="unknown sort 'colour'"):
        finance_data.queue_page(scores_path, finance_data.QueueQuery(sort="colour"))
    with pytest.raises(DataValidationError, match="file not found"):
        finance_data.queue_page(scores_path.with_name("missing.parquet"))


def test_next_unreviewed_alert_follows_the_queue_order(scores_path, scores):
    alerts = scores[scores["is_alert"]].sort_values("amount", ascending=False)
    by_amount = finance_data.QueueQuery(alerts_only=False, sort="amount", descending=True)
    reviewed = alerts["transaction_id"].head(3).tolist()
    following = finance_data.first_unreviewed_alert(scores_path, by_amount, reviewed)
    assert following == (alerts["transaction_id"].iloc[3], int(alerts["rank"].iloc[3]))
    assert finance_data.first_unreviewed_alert(scores_path, by_amount,
                                               alerts["transaction_id"]) is None
    page, total = finance_data.queue_page(scores_path, finance_data.QueueQuery(
        exclude_ids=tuple(reviewed), page_size=100))
    assert total == len(alerts) - 3 and not set(reviewed) & set(page["transaction_id"])


def test_bounds(scores_path, scores):
    bounds = finance_data.queue_bounds(scores_path)
    assert bounds["n_rows"] == 400 and bounds["n_alerts"] == 20
    assert bounds["first_date"] == scores["timestamp"].min().date()
    assert bounds["max_amount"] == pytest.approx(scores["amount"].max())


def test_detail_reasons_explanation_additivity(scores_path, scores, synthetic_workspace):
    top = scores.iloc[0]
    row = finance_data.transaction(scores_path, top["transaction_id"])
    assert row["rank"] == 1
    assert finance_data.transaction(scores_path, top["transaction_id"], rank=1).equals(row)
    with pytest.raises(DataValidationError, match="no transaction"):
        finance_data.transaction(scores_path, top["transaction_id"], rank=2)
    reasons = finance_data.reasons(row)
    assert len(reasons) == 3 and reasons["shap"].is_monotonic_decreasing
    shap = finance_data.explanation(scores_path.with_name("explanations.parquet"), top["transaction_id"])
    assert set(shap["feature"]) == set(FEATURES)
    assert shap["shap_value"].abs().is_monotonic_decreasing
    assert EXPECTED_SCORE + shap["shap_value"].sum() == pytest.approx(top["score"])
    assert finance_data.explanation(scores_path.with_name("explanations.parquet"), "nope").empty
    with pytest.raises(DataValidationError, match="no transaction 'nope'"):
        finance_data.transaction(scores_path, "nope")


def test_customer_history_window(scores, workspace):
    # a private copy: the history builds the run's index into the run's cache folder
    data = workspace / "data" / "finance" / "transactions.parquet"
    scores_path = workspace / "runs" / "finance" / "finance-run" / "scores.parquet"
    top = scores.iloc[0]
    history = finance_data.customer_history(data, scores_path, top["customer_id"], top["timestamp"],
                                            days=10)
    raw = pd.read_parquet(data)
    mine = raw[(raw["customer_id"] == top["customer_id"])
               & raw["timestamp"].between(top["timestamp"] - pd.Timedelta(days=10), top["timestamp"])]
    assert sorted(history["transaction_id"]) == sorted(mine["transaction_id"])
    assert history["timestamp"].is_monotonic_increasing
    assert top["transaction_id"] in set(history["transaction_id"])
    assert history["score"].notna().all()  # every transaction of the input was scored


def test_kpis_count_latest_decision_of_alerts_only(scores_path, scores, tmp_path):
    store = ReviewStore(tmp_path / "reviews.sqlite")
    alerts = scores[scores["is_alert"]]["transaction_id"].tolist()
    normal = scores[~scores["is_alert"]]["transaction_id"].iloc[0]
    store.record("finance", "disposition", alerts[0], "legitimate", "ana")
    store.record("finance", "disposition", alerts[0], "fraud", "bo")      # overrides
    store.record("finance", "disposition", alerts[1], "legitimate", "ana")
    store.record("finance", "disposition", alerts[2], "fraud", "ana")
    store.record("finance", "disposition", alerts[3], "needs_information", "ana")
    store.record("finance", "disposition", normal, "fraud", "ana")        # not an alert
    store.record("finance", "disposition", "tx-other-run", "fraud", "ana")
    current = store.current("finance", "disposition")
    kpis = finance_data.disposition_kpis(
        current, finance_data.alert_flags(scores_path, current["item_id"]), 20)
    assert kpis["fraud"] == 2 and kpis["legitimate"] == 1 and kpis["needs_information"] == 1
    assert kpis["precision"] == pytest.approx(2 / 3)
    assert kpis["reviewed_alerts"] == 4 and kpis["reviewed"] == 5
    assert kpis["progress"] == pytest.approx(4 / 20)
    empty = finance_data.disposition_kpis(current.iloc[:0], pd.Series(dtype=bool), 20)
    assert empty["reviewed"] == 0 and np.isnan(empty["precision"])
    page = finance_data.with_dispositions(scores.head(3), current)
    assert page["disposition"].tolist()[0] in ("", "fraud", "legitimate", "needs_information")


# --- medical ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def medical_run(synthetic_workspace):
    return synthetic_workspace / "runs" / "medical" / "medical-run"


def test_cases_sorted_and_volumes_aligned(medical_run):
    table = medical_data.cases(medical_run)
    assert table["rank"].tolist() == [1, 2] and table["case"].iloc[0] == "patient_000"
    volumes = medical_data.load_case(medical_run, table.iloc[0])
    assert volumes.image.shape == volumes.segmentation.shape == volumes.anomaly.shape == (24, 20, 12)
    assert volumes.spacing == (1.5, 1.5, 3.0)
    # the lesion (planted in the liver) is the hottest part of the map
    lesion = volumes.anomaly > 0.5
    assert lesion.any() and (volumes.segmentation[lesion] == 1).all()


def test_slices_orientation_and_hottest():
    volume = np.zeros((4, 5, 6))
    volume[3, 4, 5] = 1.0  # right, anterior, superior corner (RAS+)
    axial = medical_data.take_slice(volume, "axial", 5)
    coronal = medical_data.take_slice(volume, "coronal", 4)
    sagittal = medical_data.take_slice(volume, "sagittal", 3)
    assert axial.shape == (5, 4) and axial[0, 0] == 1.0        # anterior top, right on the left
    assert coronal.shape == (6, 4) and coronal[0, 0] == 1.0    # superior top, right on the left
    assert sagittal.shape == (6, 5) and sagittal[0, 0] == 1.0  # superior top, anterior on the left
    with pytest.raises(DataValidationError, match="axial slice 6 is outside 0..5"):
        medical_data.take_slice(volume, "axial", 6)
    with pytest.raises(DataValidationError, match="unknown plane 'oblique'"):
        medical_data.take_slice(volume, "oblique", 0)
    vols = medical_data.CaseVolumes(image=np.zeros((4, 5, 6), np.float32), spacing=(1, 1, 1),
                                    anomaly=volume.astype(np.float32))
    assert medical_data.hottest_slice(vols, "axial") == 5
    assert medical_data.hottest_slice(vols, "sagittal") == 3


def test_slice_image_windows_and_overlays(medical_run):
    table = medical_data.cases(medical_run)
    volumes = medical_data.load_case(medical_run, table.iloc[0])
    z = medical_data.hottest_slice(volumes, "axial")
    plain = medical_data.slice_image(volumes, "axial", z, "soft tissue", False, False, size=200)
    assert plain.dtype == np.uint8 and plain.shape[2] == 3 and max(plain.shape[:2]) == 200
    assert np.allclose(plain[..., 0], plain[..., 1])           # gray without overlays
    lung = medical_data.slice_image(volumes, "axial", z, "lung", False, False, size=200)
    assert not np.array_equal(plain, lung)
    heat = medical_data.slice_image(volumes, "axial", z, "soft tissue", False, True, heat_opacity=1.0,
                                    size=200)
    assert (heat[..., 0].astype(int) - heat[..., 2]).max() > 100  # red/yellow heat shows up
    seg = medical_data.slice_image(volumes, "axial", z, "soft tissue", True, False, size=200)
    assert not np.array_equal(seg, plain)
    with pytest.raises(DataValidationError, match="unknown window 'brain'"):
        medical_data.slice_image(volumes, "axial", z, "brain")


def test_organ_table_and_region_shap(medical_run):
    table = medical_data.cases(medical_run)
    organs = medical_data.organ_table(table.iloc[0], {"1": "liver", "2": "spleen"})
    assert organs["organ"].tolist() == ["liver", "spleen"]
    assert organs["volume_ml"].gt(0).all() and organs["dice"].iloc[0] == pytest.approx(0.9)
    assert np.isnan(organs["dice"].iloc[1])
    regions = medical_data.region_shap(medical_run, "patient_000")
    assert regions["region"].iloc[0] == "liver" and len(regions) == 3


@pytest.mark.parametrize("kept_apart", [True, False])
def test_ct_run_banners_name_the_warned_cases_once(kept_apart):
    cases = [f"case_{k:02d}" for k in range(32)]
    listing = "/data/ct: left out 1 case, each the image file of an earlier one"
    lines = [f"case_{k:02d}: organ volumes implausible for an adult" for k in range(10)]
    lines.append("case_03: field of view unlike the training volumes")
    summary = {"n_cases": 32, "warning": "nothing can be flagged at FDR 0.1 yet",
               **({"input_warnings": [listing], "warnings": lines} if kept_apart else
                  {"warnings": [listing] + lines})}     # an older run: one merged list
    # a line about the whole input is shown as it is
    assert medical_data.run_warnings({"summary": summary}, cases, named=3) == [
        "nothing can be flagged at FDR 0.1 yet", listing,
        "10 of 32 cases carry warnings (case_00, case_01, case_02 and 7 more); each case "
        "shows its own above its slices"]
    assert medical_data.run_warnings({"summary": {"n_cases": 2}}, cases[:2]) == []


# --- driving ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def driving_run(synthetic_workspace):
    from core.runs import load_manifest

    run_dir = synthetic_workspace / "runs" / "driving" / "driving-run"
    return run_dir, load_manifest(run_dir)


def test_logs_and_layers(driving_run):
    run_dir, manifest = driving_run
    logs = driving_data.logs(run_dir)
    assert logs.iloc[0][["log_id", "frames", "alerts", "true_anomalies"]].tolist() == ["log_000", 40, 5, 5]
    assert bool(logs.iloc[0]["recording"])
    layers = driving_data.load_layers(run_dir, manifest, "log_000")
    assert layers.observed.shape == layers.truth.shape == layers.error.shape == (40, 32, 32)
    # observed cells are exactly the visible truth; hidden ones are 255
    assert (layers.observed[layers.visible] == layers.truth[layers.visible]).all()
    assert (layers.observed[~layers.visible] == 255).all()
    panels = driving_data.frame_panels(layers, 21, size=96)
    assert list(panels) == list(driving_data.PANELS)
    assert all(p.shape == (96, 96, 3) and p.dtype == np.uint8 for p in panels.values())
    with pytest.raises(DataValidationError, match="no frame 99"):
        driving_data.frame_panels(layers, 99)
    with pytest.raises(DataValidationError, match="no input log for 'log_404'"):
        driving_data.load_layers(run_dir, manifest, "log_404")


def test_driving_region_shap(driving_run):
    run_dir, _ = driving_run
    shap = driving_data.region_shap(run_dir, "log_000")
    assert sorted(shap["frame"].unique()) == [20, 21]
    assert set(shap["region"]) == {"front", "left", "right"}
    assert driving_data.region_shap(run_dir, "log_404").empty


def test_step_anomaly():
    alerts = np.array([3, 7, 8, 15])
    assert driving_data.step_anomaly(alerts, 0, 1) == 3
    assert driving_data.step_anomaly(alerts, 7, 1) == 8
    assert driving_data.step_anomaly(alerts, 7, -1) == 3
    assert driving_data.step_anomaly(alerts, 15, 1) is None
    assert driving_data.step_anomaly(alerts, 3, -1) is None
    assert driving_data.step_anomaly(np.array([], int), 3, 1) is None


def test_bookmarks_parse_item_ids(tmp_path):
    store = ReviewStore(tmp_path / "r.sqlite")
    store.record("driving", "bookmark", "log:a:12", "bookmark", "ana", note="first")
    store.record("driving", "bookmark", "other:3", "bookmark", "ana")
    store.record("driving", "bookmark", "log:a:30", "bookmark", "bo", note="second")
    marks = driving_data.bookmarks(store.history("driving", "bookmark"), "log:a")
    assert marks["frame"].tolist() == [30, 12] and marks["note"].tolist() == ["second", "first"]
    assert driving_data.bookmarks(pd.DataFrame(), "log:a").empty


# --- render and workspace --------------------------------------------------------------

def test_render_window_overlay_upscale():
    assert render.window(np.array([-200.0, 40.0, 240.0]), 40, 400).tolist() == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="window width must be positive"):
        render.window(np.zeros(2), 0, 0)
    gray = np.full((2, 2), 0.5)
    labels = np.array([[0, 1], [0, 0]])
    out = render.overlay(gray, labels, None, label_opacity=1.0)
    assert out[0, 0].tolist() == [128, 128, 128] and out[0, 1].tolist() == [230, 25, 75]
    big = render.upscale(np.arange(6).reshape(2, 3), (2.0, 1.0), target=12)
    assert big.shape == (12, 9) and big[0, 0] == 0 and big[-1, -1] == 5


def test_resolve_workspace(monkeypatch, tmp_path):
    monkeypatch.setenv(wsmod.ENV_VAR, str(tmp_path / "env"))
    assert wsmod.resolve_workspace(["--workspace", str(tmp_path / "arg")]) == tmp_path / "arg"
    assert wsmod.resolve_workspace([f"--workspace={tmp_path / 'eq'}"]) == tmp_path / "eq"
    assert wsmod.resolve_workspace([]) == tmp_path / "env"
    monkeypatch.delenv(wsmod.ENV_VAR)
    monkeypatch.chdir(tmp_path)
    assert wsmod.resolve_workspace(None) == tmp_path / "unmask-workspace"


def test_overview_counts_and_review_progress(workspace):
    table = wsmod.overview(workspace)
    assert sorted(table["vertical"]) == ["driving", "finance", "medical"]
    finance = table[table["vertical"] == "finance"].iloc[0]
    assert (finance["items"], finance["alerts"], finance["alert_rate"]) == (400, 20, 0.05)
    store = wsmod.review_store(workspace)
    for item in ("a", "b", "b"):
        store.record("finance", "disposition", item, "fraud", "ana", run_id="finance-run")
    store.record("finance", "disposition", "c", "fraud", "ana", run_id="another-run")
    totals = wsmod.vertical_totals(wsmod.overview(workspace)).set_index("vertical")
    assert totals.loc["finance", "reviewed"] == 2
    assert totals.loc["finance", "review_progress"] == pytest.approx(2 / 20)


def test_overview_of_missing_workspace(tmp_path):
    assert wsmod.overview(tmp_path / "nothing").empty
    assert not (tmp_path / "nothing").exists()  # reading never creates it
    totals = wsmod.vertical_totals(wsmod.overview(tmp_path))
    assert totals["runs"].tolist() == [0, 0, 0]


# --- charts ----------------------------------------------------------------------------

def test_waterfall_steps_end_at_the_score():
    from dashboard import plots

    shap = pd.DataFrame({"feature": [f"f{i}" for i in range(12)],
                         "shap_value": np.linspace(-0.1, 0.5, 12), "value": np.arange(12.0)})
    steps = plots.waterfall_steps(shap, expected=0.2, top=5)
    assert steps["step"].iloc[0] == "expected score" and steps["step"].iloc[-1] == "score"
    assert steps["step"].iloc[1] == "f11 = 11" and steps["step"].iloc[6] == "7 other features"
    assert steps["end"].iloc[-1] == pytest.approx(0.2 + shap["shap_value"].sum())
    inner = steps.iloc[1:-1]
    assert np.allclose(inner["end"] - inner["start"], inner["shap"])
    assert np.allclose(inner["start"].iloc[1:].to_numpy(), inner["end"].iloc[:-1].to_numpy())


def test_anomaly_spans():
    from dashboard import plots

    frames = pd.DataFrame({"frame": np.arange(10), "anomaly": [0, 1, 1, 0, 0, 0, 1, 0, 1, 1]})
    spans = plots.anomaly_spans(frames.assign(anomaly=frames["anomaly"].astype(bool)))
    assert spans.values.tolist() == [[0.5, 2.5], [5.5, 6.5], [7.5, 9.5]]
    assert plots.anomaly_spans(frames.drop(columns="anomaly")).empty


def test_names_from_run_files_never_leave_the_run(workspace):
    """A log id or file name read from a run's tables is checked where a path is built."""
    from core.runs import load_manifest

    run_dir = workspace / "runs" / "driving" / "driving-run"
    (run_dir.parent / "outside.rrd").write_bytes(b"RRF2")            # what ../outside reaches
    assert driving_data.recording_path(run_dir, "log_000") is not None
    assert driving_data.recording_path(run_dir, "../outside") is None
    with pytest.raises(DataValidationError, match=r"frames.parquet: column 'log_id': "
                       r"'../outside' is not a safe name"):
        driving_data.load_layers(run_dir, load_manifest(run_dir), "../outside")
    medical_run = workspace / "runs" / "medical" / "medical-run"
    row = medical_data.cases(medical_run).iloc[0].copy()
    row["segmentation"] = "../../data/medical/x_seg.nii.gz"
    with pytest.raises(DataValidationError, match=r"scores.parquet: case 'patient_000', column "
                       r"'segmentation': '../../data/medical/x_seg.nii.gz' is not a safe name"):
        medical_data.load_case(medical_run, row)
