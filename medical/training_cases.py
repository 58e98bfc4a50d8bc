"""The cases a segmenter's training reads: which ones, in which role, each read once.

A labelled dataset's cases are trained on (the first ``n_labels``), validate the
post-processing (the labelled ones beyond), calibrate organ scoring (healthy ones neither
the segmenter nor the pretrained anomaly network trained on) or, given as unlabelled
volumes, feed masked consistency (``medical.consistency``) unless they already have one
of those roles. Cases are matched by :attr:`medical.io.Case.key` (the image file, however
its path is written), here as wherever an image read once is kept for later
(``medical.volumes.spacing_and_images``, read back by ``medical.segment`` and
``medical.pretrain``).

Calibration cases must be unseen by the model they calibrate: a case it trained on may
score lower than a new healthy case, so new healthy cases would get p-values too small and
the false-discovery rate asked for would not hold (on the small demo the network's plain
score was 0.9x on its pretraining cases; the default organ score, which does not run the
network, was not lower: bench/README.md). The cases the pretrained network trained on are
the image files its bundle records (:func:`pretraining_cases`). :func:`unseen_calibration`
leaves such cases out with one ``warning:`` line and refuses when too few remain, as
``--unlabelled`` leaves out cases that already have a role (:func:`select_unlabelled`);
both through :func:`leave_out`.

:class:`CaseReader` prepares the cases for training and validation and keeps what the
guard's reference (``medical.guard.InputReference``) and the organ calibration read next,
so that each volume is read once per training.

Example:
    >>> labelled = labelled_cases("data/medical/train")            # doctest: +SKIP
    >>> cases = first_labelled(labelled, 4, "data/medical/train")   # doctest: +SKIP
    >>> validation = not_among(labelled, cases)  # the labelled ones beyond  # doctest: +SKIP
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from core.errors import DataValidationError, UnmaskWarning
from core.text import counted

from .guard import InputReference, body_hu_cdf, ras_extent_mm
from .io import Case, file_key, find_cases, load_label_like, load_volume
from .transforms import Preprocessor, PreprocessConfig
from .volumes import PreparedCase, prepare_case, prepare_read, read_case

# why a given unlabelled volume or calibration case is left out, by the role it already has
WHY_LEFT_OUT = {"training": "trained on with their labels",
                "validation": "they validate the post-processing, so stay unseen",
                "calibration": "they calibrate organ scoring, so stay unseen",
                "pretraining": "the anomaly model trained on them"}
# fewest cases an explicitly given organ calibration may keep (as ``healthy_cases`` asks)
MIN_CALIBRATION_CASES = 2


# --- which cases, in which role ----------------------------------------------------------

def listed_for_training(data, scorer, spacing, out, calibration_cases) -> list:
    """The cases of ``data`` that `medical train` reads (:func:`~medical.io.find_cases`), listed
    once for its labelled cases and its organ calibration, so each file is checked once and
    a repeat listing warns once: every split where the default organ calibration reads them
    (:func:`organ_calibration_cases` without ``calibration_cases``), else the training split
    only, so a test list it never reads (a missing ``imagesTs/``, a test image also listed
    for training, a test case named as a training one) is not refused."""
    whole = calibration_cases is None and calibrates(scorer, spacing, out)
    return find_cases(data, split=None if whole else "training")


def labelled_cases(data, n_labels: int | None = None, listed=None) -> list:
    """The first ``n_labels`` cases (by name) of ``data`` that have a label file; ``listed``:
    the cases of ``data`` where a caller that reads other cases too has listed them already
    (:func:`listed_for_training`); by default its training split
    (:func:`~medical.io.find_cases`)."""
    listed = find_cases(data, split="training") if listed is None else listed
    cases = sorted((c for c in listed if c.label is not None), key=lambda c: c.name)
    if not cases:
        raise DataValidationError(f"{data}: no labelled cases (dataset.json 'training' entries "
                                  "with a 'label')")
    return first_labelled(cases, n_labels, data)


def first_labelled(labelled: list, n_labels: int | None, data) -> list:
    """The first ``n_labels`` of ``labelled`` (``labelled_cases(data)``; None: all of them),
    refusing a count ``data`` does not have."""
    if n_labels is not None and not 1 <= n_labels <= len(labelled):
        raise DataValidationError(f"--labels {n_labels}: {data} has {len(labelled)} labelled cases")
    return labelled[:n_labels]


def not_among(cases, used) -> list:
    """The ``cases`` that are none of ``used`` (by :attr:`~medical.io.Case.key`)."""
    keys = {c.key for c in used}
    return [c for c in cases if c.key not in keys]


def organ_calibration_cases(data, listed, cases, calibration_cases, scorer, spacing,
                            out) -> list:
    """The healthy cases a saved, fine-tuned model's organ calibration reads (on every
    rank); none without a pretrained ``scorer`` on the model grid of ``spacing`` or
    without ``out``. Neither the segmenter's training ``cases`` nor the cases the scorer
    pretrained on (:func:`pretraining_cases`) may calibrate.

    ``calibration_cases`` given: those beyond both (:func:`unseen_calibration`: a warning
    if some are left out, refused below :data:`MIN_CALIBRATION_CASES`). By default: the
    lesion-free cases of ``data`` (``listed``: its cases, every split,
    :func:`listed_for_training`) beyond both; when
    fewer than 2 of them are unseen, all lesion-free cases beyond the training ``cases``
    (seen ones too, with a warning: organ scoring predicts organ voxels from the case's own
    visible parenchyma unless ``organ_prediction="network"``, so a pretraining case scores
    like an unseen one, bench/README.md), and none below 2 of those. The validation cases
    may calibrate: the network never trained on them, they only chose each organ's
    post-processing."""
    if not calibrates(scorer, spacing, out):
        return []
    recorded = _recorded_images(scorer)
    pretraining = pretraining_cases(recorded)
    roles = {"training": cases, "pretraining": pretraining or []}
    if calibration_cases is not None:
        calibration_cases = list(calibration_cases)
        _warn_unrecorded(recorded, pretraining, len(calibration_cases), "given")
        return unseen_calibration(calibration_cases, roles)
    return _default_organ_calibration(data, listed, cases, recorded, pretraining)


def calibrates(scorer, spacing, out) -> bool:
    """Whether a fine-tuned model saved at ``out`` calibrates organ scoring: only with a
    pretrained ``scorer`` on the model grid of ``spacing``."""
    return (scorer is not None and out is not None
            and scorer.preprocess == PreprocessConfig(spacing=tuple(spacing)))


def _default_organ_calibration(data, listed, cases, recorded, pretraining) -> list:
    """:func:`organ_calibration_cases` by default: the lesion-free cases of ``data``
    (``listed``) beyond the training ``cases`` and the ``pretraining`` ones (``None``:
    unknown here; ``recorded``: the image files the pretrained bundle records)."""
    held_out = [c for c in not_among(listed, cases) if not c.has_lesion]
    if len(held_out) < MIN_CALIBRATION_CASES:
        return []
    _warn_unrecorded(recorded, pretraining, len(held_out),
                     f"lesion-free of {data} beyond the training ones")
    unseen, left_out = leave_out(held_out, {"pretraining": pretraining or []})
    if len(unseen) >= MIN_CALIBRATION_CASES:
        if left_out["pretraining"]:
            warnings.warn(f"organ calibration: left out {left_out_text(left_out)} of the "
                          f"{len(held_out)} lesion-free cases of {data} beyond the training "
                          f"ones; calibrating on the {len(unseen)} left", UnmaskWarning,
                          stacklevel=3)
        return unseen
    warnings.warn(f"organ calibration: {left_out['pretraining']} of its {len(held_out)} cases "
                  f"(the lesion-free ones of {data} beyond the training ones) are pretraining "
                  f"cases (the anomaly model trained on them), only {len(unseen)} unseen; "
                  "calibrating on all of them: give --calibration-data with healthy cases it "
                  "never trained on", UnmaskWarning, stacklevel=3)
    return held_out


def pretraining_cases(recorded: list[Path] | None) -> list | None:
    """The cases a pretrained scorer trained on, as the image files its bundle records
    (``recorded``: :func:`_recorded_images`, matched by :attr:`~medical.io.Case.key`);
    ``None`` when that is unknown here: the bundle records only their names (saved before it
    recorded files; names are unique only within one data root, which it does not record
    either), or none of the files it records is on this machine (the data or the bundle
    moved), so no case would match and every pretraining case would calibrate unnoticed."""
    if recorded is None or not any(image.exists() for image in recorded):
        return None
    return [Case(image.name, image) for image in recorded]


def _recorded_images(scorer) -> list[Path] | None:
    """The image files the pretrained ``scorer``'s bundle records
    (``provenance_["training"]["images"]``); None: names only."""
    images = scorer.provenance_.get("training", {}).get("images")
    return None if images is None else [Path(image) for image in images]


def _warn_unrecorded(recorded, pretraining, n_cases: int, which: str) -> None:
    """One warning when it is unknown here which cases the pretrained scorer trained on
    (``pretraining`` None, :func:`pretraining_cases` of the image files its bundle
    ``recorded``)."""
    if pretraining is not None:
        return
    why = ("does not record its training cases' files" if recorded is None else
           f"records {len(recorded)} training files, none of them on this machine (moved?)")
    warnings.warn(f"organ calibration: the pretrained bundle {why}, so whether any of the "
                  f"{n_cases} calibration cases ({which}) trained the anomaly model is unknown; "
                  "run medical pretrain again, or give --calibration-data with healthy cases it "
                  "never trained on", UnmaskWarning, stacklevel=4)


def select_unlabelled(unlabelled_cases, roles: dict[str, list]) -> tuple[list, dict[str, int]]:
    """The ``unlabelled_cases`` that have none of the ``roles`` (role of
    :data:`WHY_LEFT_OUT` -> its cases), and how many were left out per role (a case with
    two roles counts for the first). ``None``: no cases, ``{}``. Reads no volume, so a
    selection that leaves none is refused before training reads anything."""
    if unlabelled_cases is None:
        return [], {}
    given = list(unlabelled_cases)
    kept, left_out = leave_out(given, roles)
    if not kept:
        raise DataValidationError(f"no unlabelled volumes left among the {len(given)} given"
                                  + (f": {left_out_text(left_out)}" if given else ""))
    return kept, left_out


def unseen_calibration(calibration_cases, roles: dict[str, list],
                       minimum: int = MIN_CALIBRATION_CASES) -> list:
    """The ``calibration_cases`` that have none of the ``roles`` (role of
    :data:`WHY_LEFT_OUT` -> the cases the calibrated model saw in it). Those left out are
    counted in one :class:`core.errors.UnmaskWarning` (a ``warning:`` line on the CLI),
    with how many remain. Reads no volume.

    Raises:
        DataValidationError: fewer than ``minimum`` remain (before anything is read or written).
    """
    given = list(calibration_cases)
    kept, left_out = leave_out(given, roles)
    n_left = sum(left_out.values())
    if len(kept) < minimum:
        seen = ", ".join(c.name for c in not_among(given, kept))
        raise DataValidationError(
            f"calibration cases: {len(kept)} unseen of the {len(given)} given, {minimum} "
            f"needed" + (f"; left out {n_left}: {left_out_text(left_out)}: {seen}" if n_left else ""))
    if n_left:
        warnings.warn(f"calibration cases: left out {n_left} of the {len(given)} given: "
                      f"{left_out_text(left_out)}; calibrating on the {len(kept)} left",
                      UnmaskWarning, stacklevel=2)
    return kept


def leave_out(cases: list, roles: dict[str, list]) -> tuple[list, dict[str, int]]:
    """The ``cases`` that have none of the ``roles`` (by :attr:`~medical.io.Case.key`), and
    how many were left out per role (a case with two roles counts for the first)."""
    keys = {role: {c.key for c in used} for role, used in roles.items()}
    kept, left_out = [], dict.fromkeys(roles, 0)
    for case in cases:
        role = next((role for role, used in keys.items() if case.key in used), None)
        if role is None:
            kept.append(case)
        else:
            left_out[role] += 1
    return kept, left_out


def left_out_text(left_out: dict[str, int]) -> str:
    """``"2 training cases (trained on with their labels), 4 validation cases (...)"``:
    the roles of :data:`WHY_LEFT_OUT` with a count above 0."""
    return ", ".join(f"{counted(n, role + ' case')} ({WHY_LEFT_OUT[role]})"
                     for role, n in left_out.items() if n)


def unlabelled_summary(used: int, left_out: dict[str, int]) -> str:
    """One line for the CLI: how many unlabelled volumes masked consistency used, and how
    many of those given were left out and why."""
    line = f"masked consistency on {counted(used, 'unlabelled volume')}"
    left = sum(left_out.values())
    return f"{line}; left out {left}: {left_out_text(left_out)}" if left else line


# --- reading each once -------------------------------------------------------------------

@dataclass
class CaseSummary:
    """What the guard's reference (``medical.guard``) needs of one labelled case: field of
    view (mm) and body HU distribution of its image, voxel volume (ml) and voxel count of
    each value of its label map (organ names may be known only after training reads it)."""

    extent_mm: np.ndarray
    hu_cdf: np.ndarray
    voxel_ml: float
    label_counts: dict[float, int]

    @classmethod
    def of(cls, image, label) -> "CaseSummary":
        """Summarise a loaded image ``(1, X, Y, Z)`` and its label map."""
        affine = np.asarray(image.affine, dtype=np.float64)
        values = image.as_tensor().numpy()[0]
        label_values, counts = np.unique(label.as_tensor().numpy(), return_counts=True)
        return cls(ras_extent_mm(values.shape, affine), body_hu_cdf(values),
                   abs(np.linalg.det(affine[:3, :3])) / 1000.0,
                   {float(v): int(n) for v, n in zip(label_values, counts)})

    def organ_volumes(self, labels: dict[int, str]) -> dict[str, float]:
        return {name: float(self.label_counts.get(float(k), 0) * self.voxel_ml)
                for k, name in labels.items()}


def _input_reference(summaries, labels: dict[int, str]) -> InputReference:
    return InputReference.fit([s.extent_mm for s in summaries], [s.hu_cdf for s in summaries],
                              [s.organ_volumes(labels) for s in summaries])


def fit_input_reference(cases, labels: dict[int, str]) -> InputReference:
    """The guard's reference (``medical.guard``) from labelled training ``cases``: field
    of view and body HU of each image, organ volumes (ml) of each label map (one case in
    memory at a time)."""
    return _input_reference([_read_summary(c) for c in cases], labels)


def _read_summary(case) -> CaseSummary:
    image = load_volume(case.image)
    return CaseSummary.of(image, load_label_like(case.label, image, case.image))


class CaseReader:
    """Prepares cases for training and validation, keeping each labelled one's
    :class:`CaseSummary` as it goes by, so that fitting the guard's reference afterwards
    reads only the cases not prepared, and the prepared images among ``keep`` (the held-out
    healthy cases the organ calibration reads next; their truth is dropped as soon as the
    validation has read it): each volume is read once per training."""

    def __init__(self, preprocessor: Preprocessor, keep=()):
        self.preprocessor = preprocessor
        self.summaries: dict[tuple[Path, Path | None], CaseSummary] = {}   # by _summary_key
        self.keep = {c.key for c in keep}
        self.kept: dict[Path, PreparedCase] = {}                             # by Case.key

    def prepare(self, case, image=None) -> PreparedCase:
        """``case`` with its truth on the model grid; ``image``: its image if already loaded."""
        image, label, lesion = read_case(case, with_truth=True, image=image)
        if label is not None:
            self.summaries[_summary_key(case)] = CaseSummary.of(image, label)
        prepared = prepare_read(case, image, label, lesion, self.preprocessor)
        if case.key in self.keep:   # the organ calibration reads only the image
            self.kept[case.key] = replace(prepared, label=None, lesion=None)
        return prepared

    def prepare_image(self, case) -> PreparedCase:
        """``case``'s image on the model grid: as :meth:`prepare` kept it (handed out once),
        else read (the image alone)."""
        return self.kept.pop(case.key, None) or prepare_case(case, self.preprocessor)

    def input_reference(self, cases, labels: dict[int, str]) -> InputReference:
        """:func:`fit_input_reference` on labelled ``cases``, from the summaries kept."""
        return _input_reference([self.summaries.get(_summary_key(c)) or _read_summary(c)
                                 for c in cases], labels)


def _summary_key(case) -> tuple[Path, Path | None]:
    """A labelled case's summary is its image's with that label file."""
    return case.key, file_key(case.label) if case.label is not None else None
