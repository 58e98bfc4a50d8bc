"""The pretraining tasks by name, and what sets each variant apart.

Kept apart from the loss (:func:`medical.reconstruction.reconstruction_loss`) so that code
which only needs to know what a pretext trains on (``medical.volumes.check_studies``, the
benchmark's command line) does not import the loss and its distortions.
"""
from __future__ import annotations

# pretext -> medical.genesis.draw_distortion's probabilities; "genesis_whole" also shows a
# quarter of the crops whole, as segmentation does (masked crops shift the input statistics)
GENESIS_VARIANTS = {"genesis": {}, "genesis_whole": {"p_hide_nothing": 0.5}}
# pretext -> whether the loss also covers the visible (remapped) voxels, which must then be
# mapped back too; "remap" asks only for the hidden ones, as in-painting does
REMAP_VARIANTS = {"remap": False, "remap_everywhere": True}
# in-painting plus a dense contrastive loss between the crop and a remapped view of it
INVARIANT = "inpaint_invariant"
# one body's contrast phases: another phase of the crop from a masked crop of one phase;
# "cross_phase_fill": the crop in the target phase, its hidden blocks filled by the source phase
CROSS_PHASE = "cross_phase"
PHASE_FILL = "cross_phase_fill"
# cross-phase pretext -> whether the loss covers every voxel (else the hidden ones only)
CROSS_PHASE_VARIANTS = {CROSS_PHASE: True, "cross_phase_hidden": False, PHASE_FILL: False}
PRETEXTS = ("inpaint", *GENESIS_VARIANTS, *REMAP_VARIANTS, INVARIANT, *CROSS_PHASE_VARIANTS)
