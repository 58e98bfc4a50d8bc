"""Build the medical part of a demo workspace: simulate, pretrain, fine-tune, infer.

Layout written (see docs/runs.md)::

    WS/data/medical/train/     healthy phantoms, labelled (MSD layout)
    WS/data/medical/test/      phantoms, about half with lesions (lesion masks included)
    WS/models/medical/pretrained/   ct-anomaly bundle (masked-volume pretraining)
    WS/models/medical/ct/           segmenter/ + anomaly/
    WS/runs/medical/<run_id>/       the inference run the dashboard shows

Example:
    >>> run_dir = build_demo("workspace", size="tiny")      # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.errors import DataValidationError
from core.runs import new_run_id


@dataclass(frozen=True)
class DemoSize:
    preset: str
    train_cases: int
    labelled_cases: int
    test_cases: int


SIZES = {"tiny": DemoSize("tiny", 6, 4, 4), "small": DemoSize("small", 10, 6, 10)}


def build_demo(workspace, size: str = "small", seed: int = 0) -> Path:
    """Simulate, train and infer into ``workspace``; return the run directory.

    Args:
        workspace: workspace root (created if missing).
        size: ``"small"`` (the demo, about 2 minutes on 2 idle cores) or ``"tiny"`` (tests).
        seed: simulator and training seed.
    """
    from .infer import infer  # lazy: loads torch/MONAI on use
    from .phantom import simulate_dataset  # lazy: loads torch/MONAI on use
    from .presets import PHANTOM_SHAPES, preset  # lazy: loads torch/MONAI on use
    from .pretrain import pretrain  # lazy: loads torch/MONAI on use
    from .segment import train_segmenter  # lazy: loads torch/MONAI on use

    if size not in SIZES:
        raise DataValidationError(f"unknown demo size {size!r}; choose one of {', '.join(SIZES)}")
    spec = SIZES[size]
    ws = Path(workspace)
    shape = PHANTOM_SHAPES[spec.preset]
    data, models = ws / "data" / "medical", ws / "models" / "medical"
    simulate_dataset(data / "train", spec.train_cases, lesions=False, seed=seed, shape=shape)
    simulate_dataset(data / "test", spec.test_cases, lesions=True, seed=seed + 1000, shape=shape,
                     prefix="patient")
    pretrain_config, segment_config = preset(spec.preset, seed)
    pretrain(data / "train", models / "pretrained", pretrain_config)
    train_segmenter(data / "train", models / "ct", models / "pretrained", spec.labelled_cases,
                    segment_config)
    return infer(models / "ct", data / "test", ws / "runs" / "medical" / new_run_id())
