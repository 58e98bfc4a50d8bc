"""bench.finance --merge-fresh: fresh seeds join the committed results apart from the
selection seeds, whose numbers stay as they were; a selection seed is refused."""
import json

import pytest

from bench.finance import OWN_WORLD, merge_fresh


def _run(seed: int, unmask_ap: float, forest_ap: float, unmask_auroc: float, forest_auroc: float) -> dict:
    results = {"unmask": {"auroc": unmask_auroc, "average_precision": unmask_ap},
               "isolation_forest_plain7": {"auroc": forest_auroc, "average_precision": forest_ap}}
    targets = {"ap_ratio": unmask_ap / forest_ap, "ap_at_least_1.10x": unmask_ap >= 1.10 * forest_ap,
               "auroc_not_below": unmask_auroc >= forest_auroc}
    return {"results": results, "targets": targets}


def _file(path, seeds: dict, config=OWN_WORLD):
    path.write_text(json.dumps({"own_simulator": {"config": config, "per_seed": seeds}}))
    return path


@pytest.fixture
def committed(tmp_path):
    out = tmp_path / "finance_worlds.json"
    out.write_text(json.dumps({"own_simulator": {"per_seed": {"2": _run(2, 0.55, 0.47, 0.868, 0.8682)}},
                               "world2_held_out": {"per_seed": {}}}))
    return out


def test_fresh_seeds_merge_apart_and_accumulate(tmp_path, committed):
    before = json.loads(committed.read_text())
    merge_fresh([_file(tmp_path / "s3.json", {"3": _run(3, 0.6, 0.5, 0.90, 0.89)})], committed)
    merge_fresh([_file(tmp_path / "s4.json", {"4": _run(4, 0.5, 0.5, 0.80, 0.81)})], committed)
    after = json.loads(committed.read_text())
    assert after["own_simulator"] == before["own_simulator"]
    fresh = after["own_simulator_fresh"]
    assert list(fresh["per_seed"]) == ["3", "4"]
    assert fresh["over_seeds"]["seeds"] == [3, 4]
    assert fresh["over_seeds"]["ap_ratio_min"] == pytest.approx(1.0)
    assert fresh["over_seeds"]["ap_met"] == 1 and fresh["over_seeds"]["auroc_met"] == 1


def test_selection_seed_or_other_world_is_refused_and_nothing_written(tmp_path, committed):
    before = committed.read_text()
    with pytest.raises(SystemExit, match="seed 1 was used to choose"):
        merge_fresh([_file(tmp_path / "s1.json", {"1": _run(1, 0.6, 0.4, 0.9, 0.9)})], committed)
    small = {**OWN_WORLD, "n_customers": 1000}
    with pytest.raises(SystemExit, match="not a run of our simulator"):
        merge_fresh([_file(tmp_path / "small.json", {"5": _run(5, 0.6, 0.4, 0.9, 0.9)}, small)], committed)
    assert committed.read_text() == before
