"""Masked consistency while fine-tuning (``medical.consistency``, `medical train --unlabelled`):
the EMA teacher (alone and inside the training loop), the masked student input, the confidence
gate, the term's weight, which unlabelled volumes are used, and a tiny run end to end."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from click.testing import CliRunner
from torch import nn
from torch.utils.data import TensorDataset

from core.errors import DataValidationError
from core.training import TrainConfig, fit
from medical.cli import medical
from medical.consistency import (ConsistencyConfig, EmaTeacher, PairedCrops,
                                 confident_cross_entropy, with_consistency)
from medical.io import Case, find_cases
from medical.networks import NetworkConfig, build_network
from medical.presets import preset
from medical.segment import Segmenter, dice_ce_loss, train_segmenter
from medical.training_cases import labelled_cases, select_unlabelled
from medical.volumes import CropDataset
from read_counter import count_reads

ROI = (16, 16, 8)


def _network(seed: int = 0) -> nn.Module:
    config = NetworkConfig(channels=(4, 8), strides=(2,), num_res_units=0, roi_size=ROI)
    return build_network(config, out_channels=3, seed=seed)


class Call(NamedTuple):
    module: nn.Module         # the Recorder that ran: the student, or the teacher (a deep copy)
    grad: bool                # with gradient (the teacher runs without)
    input: torch.Tensor
    weights: torch.Tensor     # the module's parameters at the call, flattened


CALLS: list[Call] = []        # every Recorder call


class Recorder(nn.Module):
    """``inner`` that logs each call to ``CALLS`` (a module global, so the teacher, a deep
    copy, logs to the same list)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        weights = torch.cat([p.detach().flatten() for p in self.inner.parameters()])
        CALLS.append(Call(self, torch.is_grad_enabled(), x.detach().clone(), weights))
        return self.inner(x)


def test_the_teacher_is_an_ema_of_the_student():
    student, teacher = _network(), EmaTeacher(ema=0.6)
    teacher.update(student)                                    # the first update copies
    first = {k: v.clone() for k, v in teacher.network.state_dict().items()}
    assert all(torch.equal(first[k], v) for k, v in student.state_dict().items())
    assert not any(p.requires_grad for p in teacher.network.parameters())
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    teacher.update(student)                                    # warm-up: keep min(1 - 1/2, 0.6)
    second = teacher.network.state_dict()
    for k, v in student.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(second[k], 0.5 * first[k] + 0.5 * v)
    before = {k: v.clone() for k, v in second.items()}
    teacher.update(student)                                    # keep min(1 - 1/3, 0.6) = 0.6
    for k, v in student.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(teacher.network.state_dict()[k], 0.6 * before[k] + 0.4 * v)


def test_the_student_sees_the_unlabelled_crop_with_patches_hidden_the_teacher_whole():
    CALLS.clear()
    student = Recorder(_network())
    loss_fn = with_consistency(lambda model, batch, generator: torch.zeros(()), student,
                               ConsistencyConfig(mask_block=(4, 4, 2), mask_ratio=0.5))
    unlabelled = torch.rand(2, 1, *ROI) + 0.1                  # no voxel is 0 before masking
    batch = (torch.rand(2, 1, *ROI), torch.zeros(2, 1, *ROI, dtype=torch.int64), unlabelled)
    loss_fn(student, batch, torch.Generator().manual_seed(0))
    (teacher_input,) = [call.input for call in CALLS if not call.grad]
    # the supervised stub ran nothing
    (student_input,) = [call.input for call in CALLS if call.grad]
    torch.testing.assert_close(teacher_input, torch.cat([unlabelled, torch.zeros_like(unlabelled)], 1))
    hidden = student_input[:, 1:]
    assert 0.3 < float(hidden.mean()) < 0.7                    # about half of the blocks
    torch.testing.assert_close(student_input[:, :1], unlabelled * (1 - hidden))
    assert bool((student_input[:, :1][hidden.bool()] == 0).all())


def test_unconfident_voxels_add_neither_loss_nor_gradient():
    teacher_probs = torch.tensor([[0.95, 0.6], [0.03, 0.3], [0.02, 0.1]]).view(1, 3, 2, 1, 1)
    logits = torch.randn(1, 3, 2, 1, 1, requires_grad=True)
    loss = confident_cross_entropy(logits, teacher_probs, confidence=0.9)
    loss.backward()
    assert logits.grad[..., 1, :, :].abs().sum() == 0           # the 0.6 voxel: ignored
    assert logits.grad[..., 0, :, :].abs().sum() > 0
    expected = -torch.log_softmax(logits.detach(), 1)[0, 0, 0, 0, 0] / 2   # 1 of 2 voxels counts
    torch.testing.assert_close(loss.detach(), expected)
    changed = logits.detach().clone()
    changed[..., 1, :, :] += torch.tensor([5.0, -3.0, 2.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(confident_cross_entropy(changed, teacher_probs, 0.9), loss.detach())


def test_validation_batches_get_the_supervised_loss_only():
    network = _network()
    supervised = lambda model, batch, generator: torch.tensor(1.5)   # noqa: E731
    loss_fn = with_consistency(supervised, network, ConsistencyConfig(mask_block=(4, 4, 2),
                                                                     confidence=0.0))
    image, label = torch.rand(2, 1, *ROI), torch.zeros(2, 1, *ROI, dtype=torch.int64)
    generator = torch.Generator().manual_seed(0)
    assert float(loss_fn(network, (image, label), generator)) == 1.5
    # every voxel counts at confidence 0: the cross-entropy of a softmax is > 0
    assert float(loss_fn(network, (image, label, torch.rand(2, 1, *ROI)), generator).detach()) > 1.5


def test_the_weight_scales_the_consistency_term_alone():
    network, image = _network(), torch.rand(2, 1, *ROI)
    batch = (image, torch.zeros(2, 1, *ROI, dtype=torch.int64), torch.rand(2, 1, *ROI))

    def loss(weight: float) -> float:    # a fresh teacher (a copy of the student), the same mask
        config = ConsistencyConfig(weight=weight, mask_block=(4, 4, 2), confidence=0.0)
        supervised = lambda model, batch, generator: torch.tensor(1.5)   # noqa: E731
        loss_fn = with_consistency(supervised, network, config)
        return float(loss_fn(network, batch, torch.Generator().manual_seed(0)).detach())

    term = loss(1.0) - 1.5
    assert term > 0.0
    assert loss(0.0) == 1.5
    assert loss(2.0) - 1.5 == pytest.approx(2.0 * term, rel=1e-6)


def test_the_teacher_follows_the_student_step_by_step_in_the_training_loop():
    CALLS.clear()
    student = Recorder(_network())
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(4, 1, *ROI, generator=generator)
    unlabelled = torch.rand(4, 1, *ROI, generator=generator)
    label = (image > 0.5).long()
    loss_fn = with_consistency(dice_ce_loss(), student, ConsistencyConfig(mask_block=(4, 4, 2)))
    fit(student, TensorDataset(image, label, unlabelled), loss_fn,
        TrainConfig(max_epochs=1, batch_size=2, lr=0.05, progress=False),   # 2 steps
        val_dataset=TensorDataset(image[:2], label[:2]))
    teacher = [call.weights for call in CALLS if call.module is not student]
    # each step: the supervised forward (the student's weights the teacher is updated from),
    # the teacher, the student's masked forward; then validation, without gradient
    student_at = [call.weights for call in CALLS if call.module is student and call.grad][::2]
    assert len(teacher) == len(student_at) == 2
    assert not torch.allclose(student_at[0], student_at[1])           # the student has moved
    torch.testing.assert_close(teacher[0], student_at[0])             # step 1 copies it
    # step 2 keeps min(1 - 1/2, 0.99) of the teacher
    torch.testing.assert_close(teacher[1], 0.5 * student_at[0] + 0.5 * student_at[1])


def test_paired_crops_join_the_two_datasets_and_refuse_different_lengths():
    images = [torch.rand(1, 20, 20, 10).numpy()]
    labelled = CropDataset(images, ROI, 4, labels=[(images[0] > 0.5).astype("int64")])
    paired = PairedCrops(labelled, CropDataset(images, ROI, 4, seed=3))
    image, label, unlabelled = paired[0]
    assert image.shape == label.shape == unlabelled.shape == (1, *ROI)
    with pytest.raises(ValueError, match="4 labelled crops but 2 unlabelled"):
        PairedCrops(labelled, CropDataset(images, ROI, 2))


def test_unlabelled_volumes_that_are_all_training_cases_are_refused_before_any_read(
        tiny_data, monkeypatch):
    _, config = preset("tiny")
    cases = labelled_cases(tiny_data[0], 2)
    reads = count_reads(monkeypatch)
    with pytest.raises(DataValidationError, match="no unlabelled volumes left among the 2 given: "
                                                  "2 training cases"):
        train_segmenter(tiny_data[0], None, config=config, cases=cases, unlabelled_cases=cases,
                        progress=False)
    assert not reads


def test_unlabelled_cases_are_left_out_by_their_first_role_and_counted():
    a, b, c, d = (Case(n, Path(f"/data/{n}.nii.gz")) for n in "abcd")
    kept, left_out = select_unlabelled([a, b, c, d], {"training": [a], "validation": [b, c],
                                                      "calibration": [c]})
    assert kept == [d] and left_out == {"training": 1, "validation": 2, "calibration": 0}
    assert select_unlabelled(None, {"training": [a]}) == ([], {})
    with pytest.raises(DataValidationError, match=r"among the 2 given: 1 training case \(trained "
                                                  r"on with their labels\), 1 calibration case"):
        select_unlabelled([a, c], {"training": [a], "validation": [], "calibration": [c]})


def test_a_training_case_is_recognised_however_its_path_is_written(tmp_path, monkeypatch):
    images = tmp_path / "imagesTr"
    images.mkdir()
    for name in ("a", "b"):
        (images / f"{name}.nii.gz").touch()
    monkeypatch.chdir(tmp_path)
    trained = [Case("a", Path("imagesTr") / "a.nii.gz")]                    # relative
    given = [Case(n, images / f"{n}.nii.gz") for n in ("a", "b")]           # absolute
    assert select_unlabelled(given, {"training": trained}) == (given[1:], {"training": 1})
    with pytest.raises(DataValidationError, match="no unlabelled volumes left"):
        select_unlabelled(given[:1], {"training": trained})


def test_train_with_unlabelled_volumes_end_to_end(tiny_data, tmp_path):
    train, unlabelled = tiny_data              # 6 labelled phantoms; 4 others, labels unused
    result = CliRunner().invoke(medical, [str(a) for a in (
        "train", "--data", train, "--out", tmp_path / "ct", "--labels", 2, "--preset", "tiny",
        "--epochs", 2, "--unlabelled", unlabelled)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    segmenter = Segmenter.load(tmp_path / "ct" / "segmenter")
    training = segmenter.provenance_["training"]
    assert training["cases"] == ["case_000", "case_001"] and len(training["unlabelled_cases"]) == 4
    assert training["consistency"]["mask_block"] == list(preset("tiny")[0].anomaly.training_block)
    probs = segmenter.predict_proba(torch.rand(1, 32, 32, 16))
    torch.testing.assert_close(probs.sum(0), torch.ones(32, 32, 16))


def test_the_data_folder_as_unlabelled_leaves_nothing_beyond_its_held_out_cases(tiny_data,
                                                                                 tmp_path):
    train, _ = tiny_data                       # 6 labelled phantoms: 2 trained on, 4 validate
    result = CliRunner().invoke(medical, [str(a) for a in (
        "train", "--data", train, "--out", tmp_path / "ct", "--labels", 2, "--preset", "tiny",
        "--unlabelled", train)])
    assert isinstance(result.exception, DataValidationError)
    assert "among the 6 given: 2 training cases" in str(result.exception)
    assert "4 validation cases (they validate the post-processing" in str(result.exception)


def test_validation_and_calibration_cases_stay_unseen_and_the_cli_says_so(tiny_data, tiny_models,
                                                                         tmp_path, link_files):
    train, other = tiny_data                   # other: 4 phantoms, 2 of them lesion-free
    pretrained = tiny_models[0]
    calibration = [c for c in find_cases(other) if not c.has_lesion]
    ill = [c for c in find_cases(other) if c.has_lesion]
    folder = tmp_path / "unlabelled"          # links, so only the resolved paths say which is which
    link_files(folder, [c.image for c in [*labelled_cases(train)[::2], *calibration, *ill]])
    result = CliRunner().invoke(medical, [str(a) for a in (
        "train", "--data", train, "--out", tmp_path / "ct", "--labels", 2, "--preset", "tiny",
        "--epochs", 1, "--pretrained", pretrained, "--calibration-data", other,
        "--unlabelled", folder)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    # case_000 trained on; case_002 and case_004 validate; the 2 healthy others calibrate
    assert ("masked consistency on 2 unlabelled volumes; left out 5: 1 training case (trained "
            "on with their labels), 2 validation cases (they validate the post-processing, so "
            "stay unseen), 2 calibration cases (they calibrate organ scoring, so stay unseen)"
            in result.output)
    training = Segmenter.load(tmp_path / "ct" / "segmenter").provenance_["training"]
    assert training["unlabelled_cases"] == ["volume_5", "volume_6"]
    assert training["unlabelled_left_out"] == {"training": 1, "validation": 2, "calibration": 2}
