"""Build the medical part of a demo workspace: simulate, pretrain, fine-tune, infer.

Layout written (see docs/runs.md)::

    WS/data/medical/train/     healthy phantoms, labelled (MSD layout)
    WS/data/medical/calibration/   healthy phantoms that only calibrate organ scoring
    WS/data/medical/test/      phantoms, about half with lesions (lesion masks included)
    WS/models/medical/pretrained/   ct-anomaly bundle (masked-volume pretraining)
    WS/models/medical/ct/           segmenter/ + anomaly/
    WS/runs/medical/<run_id>/       the inference run the dashboard shows

The test phantoms the CT page shows are rendered at 256 x 256 in-plane (about 1.3-1.9 mm
pixels) so they look like CT; the models work on the preset's coarser, fixed grid
(``presets.SMALL_SPACING``): the training phantoms are simulated near that grid, and
inference resamples each test image to it and maps the results back onto the image.

Example:
    >>> run_dir = build_demo("workspace", size="tiny")      # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from core.errors import DataValidationError
from core.runs import new_run_id

from .phantom_anatomy import ADULT_KIDNEY_SHARE  # numpy only: the spec stays light


@dataclass(frozen=True)
class DemoSize:
    """One demo size.

    Args:
        preset: model preset (``medical.presets``).
        train_cases, labelled_cases, test_cases: phantoms simulated / labelled / shown.
        calibration_cases: healthy phantoms simulated apart that calibrate the fine-tuned
            model's organ scoring: the training phantoms not labelled are mostly cases
            the anomaly model pretrained on, which may not calibrate it
            (``medical.training_cases.organ_calibration_cases``).
        train_shape, test_shape: phantom grids (voxels) for training and for display.
        pretrain_epochs: the pretraining budget (epochs of the preset's crops per epoch).
        segment_epochs: the segmenter's epochs (at 10, the small demo's spleen was missed:
            Dice 0.02; at 25, 0.65, for about 20 s more on 2 idle cores).
    """

    preset: str
    train_cases: int
    labelled_cases: int
    test_cases: int
    calibration_cases: int
    train_shape: tuple[int, int, int]
    test_shape: tuple[int, int, int]
    pretrain_epochs: int
    segment_epochs: int


SIZES = {"tiny": DemoSize("tiny", 6, 4, 4, 2, (32, 32, 16), (32, 32, 16), 60, 15),
         "small": DemoSize("small", 16, 6, 8, 10, (64, 64, 32), (256, 256, 64), 12, 25)}
# small: the 10 calibration phantoms are enough for an alert at FDR 0.1 (at least 9; see
# core.calibration.ScoreCalibration.scores_needed)


def build_demo(workspace, size: str | DemoSize = "small", seed: int = 0,
               adult_kidney_share: float = ADULT_KIDNEY_SHARE) -> Path:
    """Simulate, train and infer into ``workspace``; return the run directory.

    Args:
        workspace: workspace root (created if missing).
        size: ``"small"`` (the demo), ``"tiny"`` (tests), or a :class:`DemoSize` recipe.
        seed: simulator and training seed.
        adult_kidney_share: share of phantoms with adult kidney anatomy
            (``medical.phantom.simulate_case``).
    """
    from .infer import infer  # lazy: loads torch/MONAI on use
    from .phantom import simulate_dataset  # lazy: loads torch/MONAI on use
    from .presets import preset  # lazy: loads torch/MONAI on use
    from .pretrain import healthy_cases, pretrain  # lazy: loads torch/MONAI on use
    from .segment import train_segmenter  # lazy: loads torch/MONAI on use

    if isinstance(size, DemoSize):
        spec = size
    elif size in SIZES:
        spec = SIZES[size]
    else:
        raise DataValidationError(f"unknown demo size {size!r}; choose one of {', '.join(SIZES)}")
    ws = Path(workspace)
    data, models = ws / "data" / "medical", ws / "models" / "medical"
    simulate_dataset(data / "train", spec.train_cases, lesions=False, seed=seed,
                     shape=spec.train_shape, adult_kidney_share=adult_kidney_share)
    simulate_dataset(data / "test", spec.test_cases, lesions=True, seed=seed + 1000,
                     shape=spec.test_shape, prefix="patient", adult_kidney_share=adult_kidney_share)
    simulate_dataset(data / "calibration", spec.calibration_cases, lesions=False,
                     seed=seed + 2000, shape=spec.train_shape, prefix="calibration",
                     adult_kidney_share=adult_kidney_share)
    pretrain_config, segment_config = preset(spec.preset, seed)
    pretrain_config = replace(pretrain_config, max_epochs=spec.pretrain_epochs,
                              patience=spec.pretrain_epochs)
    segment_config = replace(segment_config, max_epochs=spec.segment_epochs,
                             patience=spec.segment_epochs)
    pretrain(data / "train", models / "pretrained", pretrain_config)
    calibration = healthy_cases(data / "calibration", "organ calibration")
    train_segmenter(data / "train", models / "ct", models / "pretrained", spec.labelled_cases,
                    segment_config, calibration_cases=calibration)
    return infer(models / "ct", data / "test", ws / "runs" / "medical" / new_run_id())
