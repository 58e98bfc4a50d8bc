"""``bench.experiments.merge_results``: the experiments' one way to add their part to a shared
results file."""
import json
import multiprocessing

import numpy as np

from bench.experiments import merge_results


def test_a_new_file_starts_from_base_and_later_parts_keep_the_others(tmp_path):
    out = tmp_path / "results.json"
    merge_results(out, {"tuned": {"auroc": 0.8}}, under=("configurations",),
                  base={"world": "town", "configurations": {}})
    merge_results(out, {"heldout": {"auroc": 0.7}}, under=("configurations",))
    merged = merge_results(out, {"tuned": {"auroc": 0.9}}, under=("configurations",))
    assert json.loads(out.read_text()) == merged == {
        "world": "town", "configurations": {"tuned": {"auroc": 0.9}, "heldout": {"auroc": 0.7}}}
    assert out.read_text().endswith("}\n")


def test_nested_keys_are_made_where_missing_and_the_top_level_is_updated(tmp_path):
    out = tmp_path / "results.json"
    merge_results(out, {"town": 1}, under=("diagnosis",))
    merge_results(out, {"a": 2}, under=("second", "highway"))
    merge_results(out, {"decision": np.float32(0.5)}, default=float)
    assert json.loads(out.read_text()) == {"diagnosis": {"town": 1}, "second": {"highway": {"a": 2}},
                                           "decision": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]   # atomic: no temporary left


def test_base_is_copied_and_the_folder_is_made(tmp_path):
    base = {"world": "town", "configurations": {}}
    out = tmp_path / "new" / "results.json"
    merge_results(out, {"tuned": 1}, under=("configurations",), base=base)
    assert base == {"world": "town", "configurations": {}}             # the caller's, untouched
    assert json.loads(out.read_text()) == {"world": "town", "configurations": {"tuned": 1}}
    assert [p.name for p in out.parent.iterdir()] == ["results.json"]  # no lock file


def _add_parts(out, worker, parts):
    for i in range(parts):
        merge_results(out, {f"{worker}-{i}": i}, under=("parts",))


def test_steps_side_by_side_keep_every_part(tmp_path):
    out, workers, parts = tmp_path / "results.json", 4, 25
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=_add_parts, args=(out, w, parts)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0] * workers
    assert len(json.loads(out.read_text())["parts"]) == workers * parts   # no read-modify-write lost
