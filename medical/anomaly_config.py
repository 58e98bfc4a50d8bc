"""``AnomalyConfig``: the masking and scoring settings saved with the anomaly model.

Example:
    >>> AnomalyConfig(patch_size=(4, 4, 2)).context_sigma
    (2.0, 2.0, 1.0)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from core.errors import DataValidationError
from core.io import tuples_as_lists
from core.masking import PatchMasker


def check_confidence_level(level: float | None) -> None:
    """Refuse an ``organ_confidence`` level outside (0, 1] (``None``, off, passes): a
    probability of at least 0 keeps every voxel and one above 1 keeps none, so either is a
    mistake, not a setting."""
    number = isinstance(level, (int, float)) and not isinstance(level, bool)
    if level is not None and not (number and 0.0 < level <= 1.0):   # NaN fails it too
        raise DataValidationError(f"organ_confidence must be in (0, 1] or None (every labelled "
                                  f"voxel), got {level!r}")


@dataclass
class AnomalyConfig:
    """Masking and scoring settings saved with the reconstruction network.

    Args:
        patch_size: hidden patch size in voxels (model grid); larger than the lesions.
        mask_ratio: fraction of mask blocks hidden per training crop.
        mask_block: edge of the training mask's blocks in voxels (model grid); ``None`` =
            ``patch_size``. Only pretraining draws these blocks; scoring always hides
            ``patch_size`` patches on a checkerboard (``reconstruction.core_schedule``).
            Larger blocks (SimMIM / MAE: 60-75 % hidden) did not help segmentation
            fine-tuning on the phantoms (bench/README.md).
        pretext: the pretraining task: ``"inpaint"`` (hidden patches only) or
            ``"genesis"`` (also Models Genesis intensity curves, block shuffling and
            out-painting, ``medical.genesis``), which teaches appearance and context that
            segmentation fine-tuning can reuse; ``"genesis_whole"`` also shows a quarter
            of the crops whole (nothing hidden), as segmentation does; ``"remap"``
            passes each crop through a random non-monotone intensity map
            (``medical.contrast_remap``) and asks for the original crop on the hidden
            patches, so tissue must be told by shape and context, not by intensity (whose
            order changes between contrast phases); ``"remap_everywhere"`` asks for it on
            every voxel; ``"inpaint_invariant"`` is in-painting plus a dense contrastive
            loss that asks for voxel features unchanged by such a map
            (``medical.dense_contrast``; the network gets embedding channels after the
            mean and log variance, which scoring ignores); ``"cross_phase"`` trains on
            multi-phase studies and predicts another contrast phase of the crop from a
            masked crop of one phase, on every voxel (``reconstruction_loss``): a segmenter
            initialisation, not an in-painting anomaly model; ``"cross_phase_hidden"`` asks
            for the other phase on the hidden patches only; ``"cross_phase_fill"`` shows
            the crop in the target phase with its hidden patches filled by the source
            phase, and asks for the target phase there.
        smooth_sigma: Gaussian smoothing of the signed z-score, in voxels.
        organ_smooth_sigma: the same for organ scoring (``medical.organ_scoring``), whose
            z-scores are per organ and need less smoothing (development set, 0.5-1.5).
        top_k_ml: volume of highest map values averaged into the case score.
        tissue_hu: predicted healthy intensity range (HU) that is scored.
        observed_hu: observed intensity range (HU) that is scored (soft tissue; keeps
            bone, fat and gas, whose borders are never inpainted exactly, out).
        noise_hu: residuals are divided by this (HU, about the CT noise) to give z-scores;
            ``None`` divides by the network's predicted standard deviation instead (only
            worth it once the variance head is well trained: in our short runs it was not,
            and dividing by it lowered case AUROC).
        z_clip: per-voxel z-scores are clipped to this magnitude before smoothing.
        overlap: sliding-window overlap.
        sw_batch_size: windows per forward pass.
        organ_labels: label ids scored with a segmentation (parenchymal organs).
        organ_prediction: ``"context"`` (visible same-organ parenchyma), ``"network"``, or
            ``"median"`` (the organ's own median: no reconstruction, the baseline the
            others are measured against).
        organ_reference: what turns an organ's residual into a z-score: ``"case"``, the
            case's own median and robust SD of the residual in that organ (noise, contrast
            phase and texture vary per scan, so healthy cases' spread does not transfer),
            or ``"healthy"``, the calibration cases' per-organ offset and SD (the default:
            on the varied phantoms neither beats the other by more than a case, and
            ``"case"`` loses the tiny phantoms' lesion twins; bench/README.md).
        organ_tail_reference: divide each organ's map by how far it reaches on the healthy
            calibration cases (their median top-k mean in that organ), so that an organ
            whose healthy map is wide (kidney cortex and medulla) does not outrank a lesion.
            Off: on the varied phantoms it lowered case AUROC (bench/README.md).
        organ_band_hu: visible voxels further than this from the organ's median are not
            its parenchyma (context prediction).
        organ_erosion: voxels eroded from each organ's parenchyma before scoring, per
            entry of ``organ_labels`` (the liver is thick enough for 2: its border with
            the bowel is where the segmentation errs most).
        fat_hu: smoothed intensities below this are fat (renal sinus), not parenchyma.
        organ_context_scale: factor on ``context_sigma`` for the same-organ context, per
            entry of ``organ_labels`` (or one for all): the liver and spleen are large and
            uniform enough for a wide context, which a lesion's own visible rim skews less;
            the kidneys need a narrow one (development set, bench/README.md).
        organ_confidence: score only organ voxels whose segmenter probability of their
            own label is at least this (``medical.organ_scoring.confident_labels``): the
            labels spill over organ borders where the segmenter is unsure, and those
            voxels hold the healthy cases' largest errors. ``None``: every labelled voxel.
            The level also restricts the same-organ context the prediction is drawn from.
            Off: 0.99 without erosion, best of 0.5-0.99 on the varied phantoms' tuned set,
            fell on their frozen held-out set and leaves the tiny test phantoms' maps
            empty (a weak segmenter is never that sure; bench/README.md).
    """

    patch_size: tuple[int, int, int] = (8, 8, 6)
    mask_ratio: float = 0.5
    mask_block: tuple[int, int, int] | None = None
    pretext: str = "inpaint"
    smooth_sigma: float = 1.0
    top_k_ml: float = 1.0
    tissue_hu: tuple[float, float] = (50.0, 240.0)
    observed_hu: tuple[float, float] = (-30.0, 240.0)
    noise_hu: float | None = 20.0
    z_clip: float = 4.0
    overlap: float = 0.25
    sw_batch_size: int = 4
    organ_labels: tuple[int, ...] = (1, 2, 3, 4)
    organ_prediction: str = "context"
    organ_reference: str = "healthy"
    organ_tail_reference: bool = False
    organ_band_hu: float = 80.0
    organ_erosion: tuple[int, ...] = (2, 1, 1, 1)
    fat_hu: float = -30.0
    organ_context_scale: float | tuple[float, ...] = (3.0, 3.0, 1.0, 1.0)
    organ_smooth_sigma: float = 0.7
    organ_confidence: float | None = None

    def __post_init__(self):
        # a wrong level is refused when the config is built (or loaded), not at the first
        # scan scored with it
        check_confidence_level(self.organ_confidence)

    def to_dict(self) -> dict:
        return tuples_as_lists(asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> "AnomalyConfig":
        known = {f.name for f in fields(cls)}
        # to_dict wrote every tuple as a list, and no field is a list
        return cls(**{k: tuple(v) if isinstance(v, list) else v
                      for k, v in d.items() if k in known})

    @property
    def context_sigma(self) -> tuple[float, ...]:
        """Gaussian sigma (voxels) of the context baseline: half a patch per axis."""
        return tuple(p / 2.0 for p in self.patch_size)

    @property
    def training_block(self) -> tuple[int, ...]:
        """Edge (voxels) of the blocks the pretraining mask hides."""
        return tuple(self.mask_block or self.patch_size)

    def masker(self) -> PatchMasker:
        """The pretraining mask: ``mask_ratio`` of the ``training_block`` blocks hidden."""
        return PatchMasker(patch_size=self.training_block, ratio=self.mask_ratio, ndim=3)
