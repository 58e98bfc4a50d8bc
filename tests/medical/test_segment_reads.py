"""``train_segmenter`` reads each volume once: the guard's reference and the
post-processing's validation cases come from the same read as training's."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from read_counter import count_reads

from medical.anomaly import AnomalyScorer
from medical.presets import preset
from medical.segment import train_segmenter
from medical.training_cases import CaseReader, fit_input_reference, labelled_cases
from medical.transforms import Preprocessor, PreprocessConfig


def test_each_volume_is_read_once(tiny_data, monkeypatch):
    train, _ = tiny_data
    _, config = preset("tiny")
    # a given spacing: the median spacing of the training images is not read for
    config = replace(config, spacing=(12.0, 12.0, 12.0), max_epochs=1, samples_per_epoch=8)
    reads = count_reads(monkeypatch)
    segmenter = train_segmenter(train, None, None, 4, config, progress=False)

    labelled = labelled_cases(train)
    volumes = [Path(c.image) for c in labelled] + [Path(c.label) for c in labelled]
    assert segmenter.postprocessing_.cases == 2          # the 2 labelled cases not trained on
    assert {path: reads[path] for path in volumes} == {path: 1 for path in volumes}
    # the reference is the one fitted on fresh reads of every labelled case
    assert (segmenter.input_reference_.to_dict()
            == fit_input_reference(labelled, segmenter.labels).to_dict())


def test_a_kept_case_keeps_only_its_image(tiny_data):
    train, _ = tiny_data
    case = labelled_cases(train)[0]
    reader = CaseReader(Preprocessor(PreprocessConfig(spacing=(12.0, 12.0, 12.0))), keep=[case])
    prepared = reader.prepare(case)

    assert prepared.label is not None                    # the validation reads the truth
    kept = reader.prepare_image(case)
    assert kept.label is None and kept.lesion is None    # the calibration only the image
    assert torch.equal(kept.image.as_tensor(), prepared.image.as_tensor())


def _linked(cases, folder: Path, link_files) -> list:
    """The ``cases`` named through links in ``folder`` (another name, another path)."""
    images = link_files(folder, [c.image for c in cases], "linked_{}.nii.gz")
    labels = link_files(folder, [c.label for c in cases], "linked_{}_label.nii.gz")
    return [replace(case, name=f"linked_{i}", image=image, label=label)
            for i, (case, image, label) in enumerate(zip(cases, images, labels))]


def test_cases_given_through_links_are_the_same_cases(tiny_data, monkeypatch, tmp_path, link_files):
    """A training case named through a link (another name, another path) is the case the
    link points at: not validated on, and its volumes not read again for the reference."""
    train, _ = tiny_data
    _, config = preset("tiny")
    config = replace(config, spacing=(12.0, 12.0, 12.0), max_epochs=1, samples_per_epoch=8)
    labelled = labelled_cases(train)
    linked = _linked(labelled[:4], tmp_path, link_files)
    reads = count_reads(monkeypatch)
    segmenter = train_segmenter(train, None, config=config, cases=linked, progress=False)

    assert segmenter.postprocessing_.cases == 2          # the 2 labelled cases not linked
    assert sum(reads.values()) == 2 * len(labelled)      # each image and label once, one path or the other
    assert (segmenter.input_reference_.to_dict()
            == fit_input_reference(labelled, segmenter.labels).to_dict())


def test_the_organ_calibration_leaves_out_training_cases_given_through_links(
        tiny_data, tiny_models, monkeypatch, tmp_path, link_files):
    """With a pretrained model and an ``out`` folder, the organ calibration's default
    cases (the healthy cases of ``data`` not trained on) leave out the training cases
    named through links, and reads none of them again."""
    train, _ = tiny_data
    pretrained = tiny_models[0]
    _, config = preset("tiny")
    config = replace(config, max_epochs=1, samples_per_epoch=8)   # the pretrained model's spacing
    labelled = labelled_cases(train)
    linked = _linked(labelled[:4], tmp_path / "links", link_files)
    reads = count_reads(monkeypatch)
    train_segmenter(train, tmp_path / "ct", pretrained, config=config, cases=linked, progress=False)

    scorer = AnomalyScorer.load(tmp_path / "ct" / "anomaly")
    assert [c.name for c in labelled[4:]] == ["case_004", "case_005"]
    assert scorer.provenance_["organ_calibration_cases"] == ["case_004", "case_005"]
    assert sum(reads.values()) == 2 * len(labelled)      # each image and label once, one path or the other
