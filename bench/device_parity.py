"""Device parity: the same bundles score the same inputs on CPU and on a GPU (fp32, bf16).

Trains one tiny model per vertical on CPU (finance's detector on simulated transactions,
the medical anomaly model and segmenter on phantoms, the driving occlusion predictor on
simulated logs), saves each as a bundle, and scores the same inputs with the bundle
loaded on CPU and, when CUDA is available, on the GPU in fp32 and bf16 (autocast).
Reported per vertical and setting: the largest absolute difference from the scores of
the model as trained (in memory, CPU), the same relative to the spread (standard
deviation) of those scores, and for the segmenter the share of voxels whose label
changes, and (organ scoring predicts organs from context, not the network) the scores
of the plain, network-predicted anomaly maps. The ``cpu`` row is the bundle reloaded on CPU (0 expected: bundles score
bit-for-bit). Without CUDA the GPU rows are skipped, which the output says; the exit
code is 0 either way.

Usage:
    python -m bench.device_parity            # -> bench/results/device_parity.json
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from core.io import write_text_atomic

REPO = Path(__file__).resolve().parents[1]
CT_SHAPE = (32, 32, 16)


def settings() -> list[tuple[str, str, str]]:
    """``(name, device, precision)`` to compare: CPU, plus the GPU ones when there is one."""
    out = [("cpu", "cpu", "fp32")]
    if torch.cuda.is_available():
        out += [("cuda_fp32", "cuda", "fp32"), ("cuda_bf16", "cuda", "bf16")]
    return out


def differences(reference: np.ndarray, other: np.ndarray) -> dict:
    reference, other = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    diff = float(np.max(np.abs(reference - other))) if reference.size else 0.0
    spread = float(np.std(reference)) or 1.0
    return {"max_abs_diff": diff, "max_diff_over_std": diff / spread}


def compare(reference: np.ndarray, score, names) -> dict:
    """Differences from ``reference`` of ``score(device, precision)`` for every setting."""
    return {name: differences(reference, score(device, precision)) for name, device, precision in names}


# --- one tiny model per vertical -------------------------------------------------------

def finance_parity(work: Path, names) -> dict:
    from finance.detector import FinanceModel, FinanceModelConfig
    from finance.features import featurise, feature_names
    from finance.simulator import SimulatorConfig, simulate_to_parquet
    from finance.train import read_features

    tx = simulate_to_parquet(work / "tx.parquet", SimulatorConfig(n_customers=100, n_terminals=200,
                                                                  n_days=30, seed=5))
    cfg = featurise(tx, work / "features.parquet")
    frame = read_features(work / "features.parquet", columns=feature_names(cfg) + ["_row", "timestamp"])
    config = FinanceModelConfig(random_state=0, features=cfg)
    config.detector_params["max_steps"] = 200
    model = FinanceModel(config, device="cpu").fit(frame)
    model.save(work / "finance")
    rows = frame.iloc[:2000]
    return compare(model.score(rows),
                   lambda d, p: FinanceModel.load(work / "finance", d, p).score(rows), names)


def medical_parity(work: Path, names) -> dict:
    from medical.reconstruction import body_mask
    from medical.infer import load_models
    from medical.phantom import simulate_dataset
    from medical.presets import preset
    from medical.pretrain import healthy_cases, pretrain
    from medical.segment import train_segmenter
    from medical.transforms import Preprocessor
    from medical.volumes import prepare_case

    data = simulate_dataset(work / "ct", 6, lesions=False, seed=0, shape=CT_SHAPE)
    pre, seg = preset("tiny")
    pretrain(data, work / "pre", replace(pre, max_epochs=4, samples_per_epoch=8), progress=False,
             device="cpu")
    trained = train_segmenter(data, work / "ct_model", work / "pre", 3,
                              replace(seg, max_epochs=3, samples_per_epoch=8), progress=False,
                              device="cpu")
    cases = healthy_cases(data)[:3]
    labels_trained, changed, network = {}, {}, {}

    def score(segmenter, scorer, setting):
        """Organ-scored case scores (segmenter + context); ``network`` gets the scores of
        the plain maps, which the reconstruction network predicts."""
        pre = Preprocessor(scorer.preprocess)
        organ, plain, share = [], [], []
        for case in cases:
            image = prepare_case(case, pre).image.as_tensor()
            body = body_mask(image.numpy()[0])
            labels = segmenter.predict_proba(image).argmax(0).numpy()
            share.append(float(np.mean(labels != labels_trained.setdefault(case.name, labels))))
            organ.append(scorer.case_score(scorer.error_map(image, labels), body))
            plain.append(scorer.case_score(scorer.error_map(image), body))
        changed[setting], network[setting] = max(share), np.asarray(plain)
        return np.asarray(organ)

    def loaded(device, precision):
        return score(*load_models(work / "ct_model", device=device, precision=precision),
                     (device, precision))

    # the organ-calibrated anomaly model exists only as saved; the segmenter as trained
    reference = score(trained, load_models(work / "ct_model")[1], "trained")
    result = compare(reference, loaded, names)
    for name, device, precision in names:
        result[name]["segmentation_voxels_changed"] = changed[(device, precision)]
        result[name]["network_map_scores"] = differences(network["trained"],
                                                         network[(device, precision)])
    return result


def driving_parity(work: Path, names) -> dict:
    from driving.demo import sim_config
    from driving.model.predictor import OcclusionPredictor
    from driving.schema import read_log
    from driving.sim.simulator import simulate_logs

    config = replace(sim_config("tiny"), anomaly_interval_s=0.0)
    logs = [read_log(p) for p in simulate_logs(work / "logs", 2, 40, seed=1, config=config)]
    predictor = OcclusionPredictor(history=(2, 5), widths=(8, 16, 32), epochs=2, batch_size=16,
                                   progress=False, device="cpu").fit(logs)
    predictor.save(work / "driving")
    return compare(predictor.decision_function(logs[0]),
                   lambda d, p: OcclusionPredictor.load(work / "driving", d, p)
                   .decision_function(logs[0]), names)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "device_parity.json"))
    args = parser.parse_args(argv)
    names = settings()
    if len(names) == 1:
        print("no CUDA device: GPU comparisons skipped (CPU reload only)")
    result = {"torch": torch.__version__, "cuda": torch.cuda.is_available(),
              "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
              "settings": [n for n, _, _ in names]}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="unmask-parity-") as work:
        for vertical, run in (("finance", finance_parity), ("medical", medical_parity),
                              ("driving", driving_parity)):
            folder = Path(work) / vertical
            folder.mkdir()
            result[vertical] = run(folder, names)
    result["seconds"] = round(time.perf_counter() - started, 1)
    write_text_atomic(args.out, json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
