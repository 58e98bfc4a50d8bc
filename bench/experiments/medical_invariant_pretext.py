"""Contrast-invariant dense features beside in-painting: does pretraining then help two labels?

Round 15's diagnosis (bench/README.md, Medical, label efficiency): the label subsets that
pretraining hurts are pairs of one contrast phase that must segment another phase's organs;
between phases the order of tissue intensities changes. In-painting teaches features tied to
absolute intensity; the contrast-remap pretext (round 15) asked the network to undo a random
non-monotone intensity map and lost 12 points at 8 labels (it must still predict absolute
intensities). This pretext asks for what the segmenter needs instead: **voxel features that
stay the same when the contrast changes**, learned without labels.

Pretext ``"inpaint_invariant"`` (one candidate, fixed before any arm ran): the committed
in-painting loss on the crop as it is (unchanged, so the pretrained network is still the
anomaly model), plus a dense contrastive loss. Per crop a second view is the same crop through
its own random non-monotone map (``medical.contrast_remap``), masked by the same patch mask;
the UNet gets extra output channels (an embedding of ``EMBED`` dims, dropped after pretraining:
the segmenter takes the encoder only, as today). At up to ``N_POINTS`` voxels inside the body,
on a lattice of stride ``STRIDE`` voxels (so no two sampled voxels are neighbours), the
L2-normalised embeddings of the two views form an InfoNCE loss (temperature ``TAU``): each
voxel's feature in one view must pick the same voxel among all sampled voxels of the other
view, both directions. Total loss = in-painting NLL + ``WEIGHT`` x InfoNCE.
EMBED = 16, N_POINTS = 256, STRIDE = 4, TAU = 0.1, WEIGHT = 1.0 (written before any run; not
tuned: one setting, one run).

DECISION RULE (written and committed before any arm was run), the same as round 15's:
    share = (pretrained Dice - scratch Dice at 2 labels) / (scratch Dice at 8 - scratch at 2),
    Dice = mean over the 5 organs and the 4 test phantoms (seed 300), mean over the 4 label
    subsets at 2 labels (``label_subsets(8, 2, 4)``, seeds 0-3); 1 subset at 8 labels.
    Settings: the committed command's (``small`` preset, pretraining 24 epochs x 48 crops,
    fine-tuning 20 epochs x 32 crops, pretrained weights at the preset's 0.3x learning rate).
    Scratch and in-painting arms: read from round 15's ``bench/results/medical_remap_pretext.json``
    (same settings, phantom version 4) **if** scratch at 2 labels, subset 0, re-run in this
    run, reproduces that file's 0.4938 within 0.005 Dice; otherwise scratch and in-painting
    are re-run here and used instead.
    ``inpaint_invariant`` is adopted if, on the TEST set,
      (1) share(invariant) >= share(inpaint) + 0.10, and
      (2) pretrained(invariant) - scratch at 8 labels >= -1.0 point,
    and it becomes the **default** pretext only if, in addition, on the frozen HELD-OUT set
    (4 phantoms of seed 900, scored only after the test decision is written), its share is
    not below in-painting's held-out share (round 15: -0.108). Otherwise it stays an option.
    Meeting the issue's target (share >= 0.5, never worse at 8) is reported, met or not, and
    is not part of the rule.
"""
