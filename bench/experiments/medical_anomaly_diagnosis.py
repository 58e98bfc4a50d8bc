"""Diagnostic experiments behind the medical anomaly scoring decisions (docs/history.md).

Not part of the benchmark: these re-use the data and pretrained bundle that
``python -m bench.medical --keep KEEP`` leaves behind and answer two questions:

1. Where does the Gaussian (mean + variance) reconstruction fail?  ``dump`` reconstructs
   the held-out healthy calibration cases and the anomaly test cases with a bundle; ``bias``
   prints the mean / SD of ``observed - predicted`` (HU) inside each organ and the case
   AUROC / voxel AP of the default scoring.
2. Does a categorical head help?  ``categorical-train`` trains the same UNet to classify
   each hidden voxel's residual ``x - context baseline`` into ``N_BINS`` bins
   (cross-entropy on hidden voxels, same crops and masks as pretraining);
   ``categorical-eval`` scores each voxel by the negative log-probability of its observed
   bin (and by the z-score of its mid-CDF), then prints the same metrics.

Example (KEEP from ``python -m bench.medical --keep KEEP``)::

    python -m bench.experiments.medical_anomaly_diagnosis dump KEEP KEEP/pretrained maps.npz
    python -m bench.experiments.medical_anomaly_diagnosis bias maps.npz
    python -m bench.experiments.medical_anomaly_diagnosis long-pretrain KEEP 60 long_bundle
    python -m bench.experiments.medical_anomaly_diagnosis categorical-train KEEP 12 cat.pt
    python -m bench.experiments.medical_anomaly_diagnosis categorical-eval maps.npz cat.pt
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

N_BINS, BIN_RANGE = 48, 0.6  # residual bins over +-0.6 window units (+-255 HU)
ORGANS = {1: "liver", 2: "spleen", 3: "kidney_r", 4: "kidney_l"}


def calibration_names(keep: Path) -> set[str]:
    """The healthy calibration cases of the pretrained bundle in ``keep``."""
    config = json.loads((keep / "pretrained" / "config.json").read_text())["config"]
    return set(config["training"]["calibration_cases"])


def dump(keep, bundle, out):
    """Reconstruct calibration + anomaly-test cases; save image, prediction, truth."""
    from medical.anomaly import AnomalyScorer
    from medical.io import find_cases
    from medical.transforms import Preprocessor
    from medical.volumes import prepare_case

    keep = Path(keep)
    scorer = AnomalyScorer.load(bundle)
    pre = Preprocessor(scorer.preprocess)
    names = calibration_names(keep)
    cal = [c for c in find_cases(keep / "data" / "unlabelled") if c.name in names]
    cases = cal + find_cases(keep / "data" / "anomaly_test")
    arrays = {}
    for i, case in enumerate(cases):
        p = prepare_case(case, pre, with_truth=True)
        image = p.image.as_tensor().numpy()[0]
        lesion = np.zeros(image.shape, bool) if p.lesion is None else p.lesion.numpy()[0] > 0
        mean, sd = scorer.reconstruct(p.image.as_tensor())
        arrays.update({f"img_{i}": image, f"les_{i}": lesion, f"mean_{i}": mean, f"sd_{i}": sd,
                       f"lab_{i}": p.label.numpy()[0].astype(np.uint8)})
    np.savez_compressed(out, iscal=np.arange(len(cases)) < len(cal),
                        window=np.array(scorer.preprocess.window),
                        bundle=str(Path(bundle).resolve()), **arrays)


def _default_scorer(maps):
    """The dumped bundle with the benchmark's default scoring settings (``AnomalyConfig()``:
    residual / 20 HU), whose ``tissue_mask`` and ``map_from_reconstruction`` are used."""
    from medical.anomaly import AnomalyScorer
    from medical.anomaly_config import AnomalyConfig

    scorer = AnomalyScorer.load(str(maps["bundle"]))
    scorer.config = AnomalyConfig(patch_size=scorer.config.patch_size)
    return scorer


def _metrics(maps, score_map) -> tuple[float, float]:
    """Case AUROC (top-12-voxel mean) and voxel AP (body voxels) on the test cases."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from medical.reconstruction import body_mask

    scores, truth, values, labels = [], [], [], []
    for i in np.flatnonzero(~maps["iscal"]):
        image, lesion = maps[f"img_{i}"], maps[f"les_{i}"]
        body = body_mask(image)
        e = score_map(i)
        scores.append(np.sort(e[body])[-12:].mean())
        truth.append(lesion.any())
        values.append(e[body])
        labels.append(lesion[body])
    return (roc_auc_score(truth, scores),
            average_precision_score(np.concatenate(labels), np.concatenate(values)))


def _tissue(scorer, maps, i, mean):
    from medical.reconstruction import body_mask

    image = maps[f"img_{i}"]
    return scorer.tissue_mask(image, mean) & body_mask(image)


def bias(maps_path):
    """Per-organ residual (HU) and the default scoring's metrics."""
    from scipy.ndimage import binary_erosion

    maps = np.load(maps_path)
    lo, hi = maps["window"]
    width = hi - lo
    residual = {k: [] for k in ORGANS}
    for i in range(len(maps["iscal"])):
        r = (maps[f"img_{i}"] - maps[f"mean_{i}"]) * width
        for k in ORGANS:
            inside = binary_erosion(maps[f"lab_{i}"] == k) & ~maps[f"les_{i}"]
            residual[k].append((r[inside].mean(), r[inside].std()))
    for k, name in ORGANS.items():
        m, s = np.mean(residual[k], axis=0)
        print(f"{name}: observed - predicted {m:+.0f} HU (SD {s:.0f})")

    scorer = _default_scorer(maps)

    def default_map(i):
        return scorer.map_from_reconstruction(maps[f"img_{i}"], maps[f"mean_{i}"], maps[f"sd_{i}"])

    print("default scoring: case AUROC %.3f, voxel AP %.4f" % _metrics(maps, default_map))


def long_pretrain(keep, epochs, out):
    """The benchmark's pretraining, ``epochs`` long (same data, crops and seed)."""
    from medical.presets import preset
    from medical.pretrain import pretrain

    config, _ = preset("default", 0)
    config = replace(config, max_epochs=int(epochs), patience=int(epochs), samples_per_epoch=64)
    t = time.perf_counter()
    scorer = pretrain(Path(keep) / "data" / "unlabelled", out, config, progress=False)
    print(f"{time.perf_counter() - t:.0f} s; val loss {scorer.history_.val_loss}")


def _to_bin(residual: torch.Tensor) -> torch.Tensor:
    return ((residual + BIN_RANGE) / (2 * BIN_RANGE) * N_BINS).floor().clamp(0, N_BINS - 1).long()


def categorical_train(keep, epochs, out):
    """The pretraining UNet with an ``N_BINS``-way residual head (cross-entropy)."""
    from core.training import TrainConfig, fit
    from medical.reconstruction import context_baseline, masked_input
    from medical.io import find_cases
    from medical.networks import build_network
    from medical.presets import preset
    from medical.transforms import PreprocessConfig, Preprocessor
    from medical.volumes import CropDataset, prepare_cases

    keep = Path(keep)
    bundle = json.loads((keep / "pretrained" / "config.json").read_text())["config"]
    names = set(bundle["training"]["cases"])
    cases = [c for c in find_cases(keep / "data" / "unlabelled") if c.name in names]
    pre = Preprocessor(PreprocessConfig.from_dict(bundle["preprocess"]))
    images = [p.image.as_tensor().numpy() for p in prepare_cases(cases, pre)]
    config, _ = preset("default", 0)
    patch, sigma, masker = (config.anomaly.patch_size, config.anomaly.context_sigma,
                            config.anomaly.masker())

    def loss_fn(model, batch, generator):
        image = batch[0]
        masker.set_random_state(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        spatial = tuple(image.shape[2:])
        big = masker.draw(tuple(image.shape[:2]) + tuple(s + q for s, q in zip(spatial, patch)))
        offset = [int(torch.randint(0, q, (1,), generator=generator)) for q in patch]
        window = (slice(None), slice(None)) + tuple(slice(o, o + s) for o, s in zip(offset, spatial))
        hidden = torch.from_numpy(np.ascontiguousarray(big[window], dtype=np.float32))
        logits = model(masked_input(image, hidden))
        target = _to_bin(image - context_baseline(image, hidden, sigma))[:, 0]
        ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
        return (ce * hidden[:, 0]).sum() / hidden.sum().clamp_min(1.0)

    network = build_network(config.network, out_channels=N_BINS, seed=0)
    history = fit(network, CropDataset(images, config.network.roi_size, 64, seed=0), loss_fn,
                  TrainConfig(max_epochs=int(epochs), batch_size=2, lr=2e-3, patience=int(epochs),
                              seed=0, progress=False, weight_decay=1e-5),
                  val_dataset=CropDataset(images, config.network.roi_size, 8, seed=7, fixed=True))
    print("val loss", history.val_loss)
    torch.save(network.state_dict(), out)


@torch.no_grad()
def categorical_eval(maps_path, weights):
    """NLL and mid-CDF z-score maps of the categorical head, same schedule and tissue mask."""
    from monai.inferers import SlidingWindowInferer
    from scipy.ndimage import gaussian_filter
    from scipy.stats import norm

    from medical.reconstruction import context_baseline, core_schedule, masked_input
    from medical.networks import build_network
    from medical.presets import preset

    config, _ = preset("default", 0)
    network = build_network(config.network, N_BINS, state=torch.load(weights)).eval()
    inferer = SlidingWindowInferer(config.network.roi_size, sw_batch_size=4, overlap=0.25,
                                   mode="gaussian")
    edges = torch.linspace(-BIN_RANGE, BIN_RANGE, N_BINS + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    maps = np.load(maps_path)
    scorer = _default_scorer(maps)
    nll, z, mean = {}, {}, {}
    for i in np.flatnonzero(~maps["iscal"]):
        image = maps[f"img_{i}"]
        x = torch.from_numpy(image)[None, None]
        nll[i], z[i], mean[i] = (np.zeros(image.shape, np.float32) for _ in range(3))
        for hidden_np, core in core_schedule(image.shape, config.anomaly.patch_size):
            hidden = torch.from_numpy(hidden_np.astype(np.float32))[None, None]
            log_p = torch.log_softmax(inferer(masked_input(x, hidden), network), 1)[0]
            base = context_baseline(x, hidden, config.anomaly.context_sigma)[0, 0]
            observed = _to_bin(x[0, 0] - base)[None]
            p = log_p.exp()
            mid_cdf = p.cumsum(0).gather(0, observed)[0] - 0.5 * p.gather(0, observed)[0]
            nll[i][core] = -log_p.gather(0, observed)[0].numpy()[core]
            z[i][core] = norm.ppf(np.clip(mid_cdf.numpy(), 1e-4, 1 - 1e-4))[core]
            mean[i][core] = (base + (p * centres[:, None, None, None]).sum(0)).numpy()[core]

    def nll_map(i):
        tissue = _tissue(scorer, maps, i, mean[i])
        return gaussian_filter(np.where(tissue, nll[i], 0), 1.0) * tissue

    def z_map(i):
        tissue = _tissue(scorer, maps, i, mean[i])
        return gaussian_filter(np.where(tissue, np.clip(np.abs(z[i]), 0, 4), 0), 1.0) * tissue

    print("NLL of the observed bin: case AUROC %.3f, voxel AP %.4f" % _metrics(maps, nll_map))
    print("|z| of its mid-CDF:      case AUROC %.3f, voxel AP %.4f" % _metrics(maps, z_map))


COMMANDS = {"dump": dump, "bias": bias, "long-pretrain": long_pretrain,
            "categorical-train": categorical_train, "categorical-eval": categorical_eval}

if __name__ == "__main__":
    from core.runtime import configure_threads

    configure_threads()
    COMMANDS[sys.argv[1]](*sys.argv[2:])
