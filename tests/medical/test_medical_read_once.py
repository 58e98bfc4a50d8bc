"""Training reads each volume once where it used to read some twice: the median spacing of
the training images (no spacing given; ``pretrain``, and ``train_segmenter`` without a
pretrained model) and the organ calibration of a fine-tuned model on the held-out healthy
cases it validated on."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from read_counter import count_reads

from medical.anomaly import AnomalyScorer
from medical.io import find_cases, load_volume
from medical.presets import preset
from medical.pretrain import pretrain
from medical.segment import train_segmenter
from medical.training_cases import labelled_cases
from medical.transforms import median_spacing


def _volumes(data) -> list[Path]:
    labelled = labelled_cases(data)
    return [Path(c.image) for c in labelled] + [Path(c.label) for c in labelled]


def test_the_median_spacing_pass_reads_no_image_twice(tiny_data, monkeypatch):
    train, _ = tiny_data
    _, config = preset("tiny")
    assert config.spacing is None                       # the median spacing is computed
    config = replace(config, max_epochs=1, samples_per_epoch=8)
    expected = median_spacing([load_volume(c.image) for c in labelled_cases(train)[:4]])
    reads = count_reads(monkeypatch)
    segmenter = train_segmenter(train, None, None, 4, config, progress=False)

    assert segmenter.preprocess.spacing == expected
    assert {path: reads[path] for path in _volumes(train)} == {path: 1 for path in _volumes(train)}


def test_the_organ_calibration_reads_no_held_out_case_again(tiny_data, monkeypatch, tmp_path):
    train, _ = tiny_data
    pretrain_config, config = preset("tiny")
    pretrain(train, tmp_path / "pretrained", replace(pretrain_config, max_epochs=1, samples_per_epoch=8),
             progress=False)
    reads = count_reads(monkeypatch)
    train_segmenter(train, tmp_path / "ct", tmp_path / "pretrained", 4,
                    replace(config, max_epochs=1, samples_per_epoch=8), progress=False)

    scorer = AnomalyScorer.load(tmp_path / "ct" / "anomaly")
    assert scorer.provenance_["organ_calibration_cases"] == ["case_004", "case_005"]  # not trained on
    assert {path: reads[path] for path in _volumes(train)} == {path: 1 for path in _volumes(train)}


def test_pretraining_reads_each_image_once(tiny_data, monkeypatch):
    train, _ = tiny_data
    config, _ = preset("tiny")
    assert config.spacing is None                       # the median spacing is computed
    reads = count_reads(monkeypatch)
    scorer = pretrain(train, None, replace(config, max_epochs=1, samples_per_epoch=8), progress=False)

    trained = set(scorer.provenance_["training"]["cases"])
    cases = find_cases(train)
    assert scorer.preprocess.spacing == median_spacing([load_volume(c.image) for c in cases if c.name in trained])
    assert {Path(c.image): reads[Path(c.image)] for c in cases} == {Path(c.image): 1 for c in cases}


def test_pretraining_on_a_folder_of_links_reads_each_image_once(tiny_data, monkeypatch, tmp_path,
                                                               link_files):
    """Cases named through links are matched by the file they point at (``Case.key``), so
    the median spacing's read of a training image is the one training prepares."""
    train, _ = tiny_data
    config, _ = preset("tiny")
    assert config.spacing is None                       # the median spacing is computed
    link_files(tmp_path, [c.image for c in find_cases(train)])
    links = [Path(c.image) for c in find_cases(tmp_path)]
    assert len(links) == len(find_cases(train)) and all(link.is_symlink() for link in links)
    reads = count_reads(monkeypatch)
    pretrain(tmp_path, None, replace(config, max_epochs=1, samples_per_epoch=8), progress=False)

    assert reads == {link: 1 for link in links}
