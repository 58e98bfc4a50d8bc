"""The ceiling of anomaly scoring on the lesion phantoms: oracles that know the truth.

Not part of the benchmark. Re-simulates the benchmark's anomaly test phantoms
(``simulate_dataset(..., seed=400, lesions=True)`` of ``bench.medical``, same cases and
random streams) and scores them on the input grid with two oracles, using the metrics of
``medical.evaluate`` (voxel AP over voxels inside the body, best Dice, case AUROC / AP of
the mean of the top 1 mL of the map):

* ``twin``: the prediction is the case's own noise-free *healthy twin* (the same anatomy,
  partial-volume blur included, without the lesions); the residual in units of the case's
  noise SD is smoothed with a Gaussian of ``sigma`` voxels and squared. Only CT noise and
  the lesions' own partial volume limit it: no reconstruction can do better on average.
* ``organ``: knows the true organ masks (liver, spleen, kidneys) but not the healthy
  image: the prediction is the organ's median, scored over the organ eroded by one voxel
  and observed soft tissue (-30..240 HU), the same residual / smoothing / square.

Voxel AP is also given per lesion organ and per lesion size (equivalent-sphere radius):
the positives are that group's lesion voxels, the negatives all healthy body voxels.

Example::

    python -m bench.experiments.medical_anomaly_oracle --cases 16 --seed 400
"""
from __future__ import annotations

import argparse

import numpy as np

SIZE_BINS = ((0.0, 8.0), (8.0, 12.0), (12.0, 99.0))  # equivalent radius, mm


def simulate_with_twin(rng, shape, lesions: bool):
    """``medical.phantom.simulate_case``'s steps (same random stream), also returning the
    noise-free healthy twin (same anatomy and blur, no lesions), the noise SD and the
    lesion mask."""
    from medical import phantom as ph
    from medical.phantom_anatomy import draw_anatomy
    from medical.phantom_canvas import Canvas
    from medical.phantom_render import add_noise, base_image, blur, draw_style

    shape = tuple(shape)
    style = draw_style(rng)
    pixel = style.fov_mm / max(shape[:2])
    spacing = (pixel, pixel, style.z_extent_mm / shape[2])
    canvas = Canvas(shape, spacing, style.level_mm)
    masks = draw_anatomy(rng, canvas)
    hu = base_image(rng, canvas.tissue, style, spacing)
    healthy = hu.copy()
    lesion, _ = ph._add_lesions(rng, canvas, hu, masks) if lesions else (
        np.zeros(shape, dtype=bool), [])
    twin = blur(healthy, style, spacing)
    image = add_noise(rng, blur(hu, style, spacing), style).astype(np.float64)
    return image, twin, style.noise_hu, canvas.label, lesion, spacing


def lesion_groups(lesion, label, spacing) -> dict[str, np.ndarray]:
    """Lesion voxels grouped by organ and by equivalent-sphere radius."""
    from scipy.ndimage import label as components

    from medical.phantom import LABELS

    groups = {}
    parts, n = components(lesion)
    voxel_mm3 = float(np.prod(spacing))
    for j in range(1, n + 1):
        part = parts == j
        organ = LABELS[int(np.bincount(label[part]).argmax())]
        organ = "kidney" if organ.startswith("kidney") else organ
        radius = (3 * part.sum() * voxel_mm3 / (4 * np.pi)) ** (1 / 3)
        size = next(f"r {lo:.0f}-{hi:.0f} mm" if hi < 99 else f"r >= {lo:.0f} mm"
                    for lo, hi in SIZE_BINS if lo <= radius < hi)
        for key in (organ, size):
            groups[key] = groups.get(key, np.zeros(lesion.shape, bool)) | part
    return groups


def oracle_maps(image, twin, noise_sd, label, sigma):
    from scipy.ndimage import binary_erosion, gaussian_filter

    z_twin = np.clip((image - twin) / noise_sd, -4, 4)
    twin_map = gaussian_filter(z_twin, sigma) ** 2
    organ_z = np.zeros(image.shape)
    scored = np.zeros(image.shape, bool)
    for k in (1, 2, 3, 4):
        organ = label == k
        if not organ.any():
            continue
        inner = binary_erosion(organ) & (image >= -30) & (image <= 240)
        organ_z[inner] = np.clip((image[inner] - np.median(image[organ & (image >= -30)])) / noise_sd, -4, 4)
        scored |= inner
    organ_map = gaussian_filter(organ_z, sigma) ** 2 * scored
    return {"twin": twin_map, "organ": organ_map}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.experiments.medical_anomaly_oracle",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=16)
    parser.add_argument("--seed", type=int, default=400)
    parser.add_argument("--shape", default="96,96,48")
    parser.add_argument("--sigma", type=float, default=1.0, help="smoothing (voxels)")
    args = parser.parse_args(argv)
    from medical.evaluate import BODY_HU, best_dice
    from sklearn.metrics import average_precision_score, roc_auc_score

    shape = tuple(int(v) for v in args.shape.split(","))
    n_lesion = int(round(0.5 * args.cases))
    lesion_cases = set(np.random.default_rng([args.seed, args.cases]).permutation(args.cases)[:n_lesion])
    values = {"twin": [], "organ": []}
    cases, truth, groups_all = {"twin": [], "organ": []}, [], []
    contrast = []
    for i in range(args.cases):
        rng = np.random.default_rng([args.seed, i])
        image, twin, noise_sd, label, lesion, spacing = simulate_with_twin(rng, shape, i in lesion_cases)
        body = image > BODY_HU
        voxel_ml = float(np.prod(spacing)) / 1000.0
        k = max(1, int(round(1.0 / voxel_ml)))
        for name, m in oracle_maps(image, twin, noise_sd, label, args.sigma).items():
            values[name].append(m[body])
            cases[name].append(np.sort(m[body])[-k:].mean())
        truth.append(lesion[body])
        groups = lesion_groups(lesion, label, spacing)
        groups_all.append({g: v[body] for g, v in groups.items()})
        if lesion.any():
            contrast.append(float(np.abs(image - twin)[lesion].mean() / noise_sd))
    truth_v = np.concatenate(truth)
    has = [t.any() for t in truth]
    print(f"{args.cases} cases, {sum(has)} with lesions; mean |lesion - healthy twin| "
          f"{np.mean(contrast):.1f} noise SDs; lesion voxels {int(truth_v.sum())} of {truth_v.size}")
    names = sorted({g for d in groups_all for g in d})
    for name in values:
        v = np.concatenate(values[name])
        line = (f"{name:6s} case AUROC {roc_auc_score(has, cases[name]):.3f} "
                f"AP {average_precision_score(has, cases[name]):.3f}  voxel AP "
                f"{average_precision_score(truth_v, v):.3f} best Dice {best_dice(truth_v, v):.3f}")
        per = []
        for g in names:
            pos = np.concatenate([d.get(g, np.zeros(len(t), bool)) for d, t in zip(groups_all, truth)])
            keep = pos | ~truth_v
            per.append(f"{g} {average_precision_score(pos[keep], v[keep]):.3f} (n={int(pos.sum())})")
        print(line + "\n       per group voxel AP: " + "; ".join(per))


if __name__ == "__main__":
    main()
