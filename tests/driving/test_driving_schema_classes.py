"""Class names in drive logs: one spelling per class, the known classes only, and a log
that lists only (or reorders) the classes of its world."""
import json
from dataclasses import replace

import numpy as np
import pyarrow.parquet as pq
import pytest

from core.errors import DataValidationError
from driving.schema import (CLASSES, METADATA_KEY, OFF_ROAD, ROAD, SIDEWALK, VEHICLE,
                            canonical_class, log_table, read_log, write_log)


def _with_classes(log, classes, tmp_path, name="log.parquet"):
    """Write ``log`` with its metadata's class list replaced (ids untouched)."""
    table = log_table(log)
    meta = json.loads(table.schema.metadata[METADATA_KEY])
    meta["classes"] = classes
    path = tmp_path / name
    pq.write_table(table.replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()}), path)
    return path


@pytest.mark.parametrize("spelling", ["off-road", "off_road", "Off Road", "OFF-ROAD",
                                      " off  road ", "Off__Road"])
def test_every_spelling_of_a_class_is_the_same_class(spelling):
    assert canonical_class(spelling) == "off_road"


def test_a_log_with_other_spellings_reads_as_our_classes(small_log, tmp_path):
    spelled = ["Off Road", "ROAD", "lane-marking", "Sidewalk", "vehicle", "PEDESTRIAN",
               "static obstacle"]
    back = read_log(_with_classes(small_log, spelled, tmp_path))
    assert back.meta.classes == CLASSES and back.meta.world_classes is None
    assert back.meta == small_log.meta
    np.testing.assert_array_equal(back.semantic, small_log.semantic)


def test_an_unknown_class_is_one_line_listing_the_known_ones(small_log, tmp_path):
    path = _with_classes(small_log, ["off_road", "road", "cyclist"], tmp_path)
    with pytest.raises(DataValidationError) as err:
        read_log(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: metadata classes: unknown class 'cyclist'; known "
                              "classes: off_road, road, lane_marking, sidewalk, vehicle, "
                              "pedestrian, static_obstacle")


def test_a_class_named_twice_is_refused(small_log, tmp_path):
    path = _with_classes(small_log, ["off-road", "off_road", "road"], tmp_path)
    with pytest.raises(DataValidationError, match="class 'off_road' is named more than once"):
        read_log(path)


def test_a_log_listing_its_own_classes_maps_onto_ours_and_writes_back_the_same(small_log,
                                                                           tmp_path):
    # the file's ids: 0 = vehicle, 1 = road (a highway world: no sidewalks, no pedestrians)
    file_ids = np.where(small_log.semantic == VEHICLE, 0,
                        np.where(small_log.semantic == ROAD, 1, small_log.semantic))
    file_log = replace(small_log, semantic=file_ids.astype(np.uint8), semantic_true=None)
    path = _with_classes(file_log, ["Vehicle", "road"], tmp_path)
    back = read_log(path)
    assert back.meta.classes == CLASSES and back.meta.world_classes == ("vehicle", "road")
    assert back.meta.world == ("vehicle", "road")
    np.testing.assert_array_equal(back.semantic, small_log.semantic)   # our ids
    again = write_log(back, tmp_path / "again.parquet")
    meta = json.loads(pq.read_schema(again).metadata[METADATA_KEY])
    assert meta["classes"] == ["vehicle", "road"]
    stored = np.concatenate(pq.read_table(again).column("semantic").to_pylist())
    np.testing.assert_array_equal(stored, file_ids.reshape(-1))
    np.testing.assert_array_equal(read_log(again).semantic, back.semantic)


def test_writing_a_class_outside_the_log_world_is_refused(small_log, tmp_path):
    world = replace(small_log.meta, world_classes=("off_road", "road"))
    grid = np.where(small_log.semantic == VEHICLE, OFF_ROAD, small_log.semantic)
    grid[2, 3, 1] = SIDEWALK
    log = replace(small_log, meta=world, semantic=grid.astype(np.uint8), semantic_true=None)
    with pytest.raises(DataValidationError, match=r"log tiny: frame 2, column 'semantic': class "
                       r"sidewalk at cell \(3, 1\) is not among the log's classes "
                       r"\(off_road, road\)"):
        write_log(log, tmp_path / "log.parquet")
    assert not (tmp_path / "log.parquet").exists()


def test_layout_truth_of_a_reordered_log_must_hold_layout_classes(small_log, tmp_path):
    # file ids: 0 = vehicle, 1 = road; layout truth id 0 (vehicle) is not layout
    log = replace(small_log, semantic_true=None,
                  semantic=np.where(small_log.semantic == VEHICLE, 0, small_log.semantic
                                    ).astype(np.uint8),
                  layout_true=np.zeros_like(small_log.semantic))
    path = _with_classes(log, ["vehicle", "road"], tmp_path)
    with pytest.raises(DataValidationError, match=r"column 'layout_true': class value 0 at cell "
                       r"\(0, 0\) is not a layout class \(road\)"):
        read_log(path)
