"""Cache the prior-free raw maps of a world's training logs and of its test logs (read by
driving_path_channel.py): of the **tuned** configuration, the benchmark's 4 test logs and 2
normal logs (seeds 2, 502) and 6 + 2 more (seeds 3, 503); of the frozen **held-out**
configuration (bench.driving.HELDOUT), the committed run's 4 test logs and 2 normal logs,
built as bench.driving.run_world builds them (its seed, its seed + 500).
The network is the committed run's (/tmp/drv19/models/<world>); its memory gate is refitted
on the training logs' calibration tails as the benchmark's recalibration does.
Each maps file stores a digest of what its maps were computed from (the log, its metadata and
the predictor: its parameters, network weights and memory gate), so a log simulated again
(another seed or configuration under the same folder by ``bench.driving_logs.kept_logs``), or
a predictor whose weights or gate changed, has its maps computed again rather than read back.
The cache holds the network's maps only: the channels read from the observed grids
(``FrameScorer.observed_channels``) are the harnesses' to compute from the logs, each with its
own candidates, so the passes compute none of them and the digest does not depend on them."""
import hashlib
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from bench.driving import HELDOUT, TUNED
from bench.driving_logs import kept_logs
from core.io import atomic_path
from core.runtime import configure_threads
from driving.model.predictor import OcclusionPredictor
from driving.scoring.state import new_prior
from driving.scoring.surprise import raw_maps


# the fields the maps are computed from (raw_maps reads the grids, visibility and ego motion)
DIGEST_FIELDS = ("timestamp", "ego_x", "ego_y", "ego_yaw", "ego_speed", "semantic", "visible")


def log_digest(log) -> str:
    """sha256 of ``log``'s id, of its metadata (``raw_maps`` reads its resolution and warps
    with it) and of the arrays its maps are computed from."""
    digest = hashlib.sha256(log.log_id.encode())
    digest.update(repr(log.meta).encode())
    for name in DIGEST_FIELDS:
        values = np.ascontiguousarray(getattr(log, name))
        digest.update(f"{name}{values.dtype.str}{values.shape}".encode())
        digest.update(values.tobytes())
    return digest.hexdigest()


def predictor_digest(pred) -> str:
    """sha256 of what ``pred``'s maps depend on besides the log: its parameters, its network's
    weights and its memory gate (refitted by :func:`cache_sets` on the training logs)."""
    digest = hashlib.sha256(json.dumps(pred.get_params(), sort_keys=True, default=repr).encode())
    gate = pred.memory_gate_
    digest.update(json.dumps(gate.to_dict() if gate is not None else None).encode())
    for name, tensor in pred.net_.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())   # any dtype
    return digest.hexdigest()


def cached_digest(path: Path) -> str | None:
    """The digest stored in maps file ``path`` (None: no file, or one without a digest)."""
    if not path.exists():
        return None
    with np.load(path) as z:
        return str(z["digest"]) if "digest" in z.files else None


def cache_maps(pred, root: Path, name: str, logs: list) -> None:
    """Write ``root/<name>_<log id>.npz``: each log's prior-free raw maps under ``pred``, the
    context prior's inputs and the digest of the log (:func:`log_digest`) and of ``pred``
    (:func:`predictor_digest`). A log whose file holds that digest is skipped; any other file
    (another log's or predictor's, or one written before digests) is rewritten."""
    model = predictor_digest(pred)
    for log in logs:
        out = root / f"{name}_{log.log_id}.npz"
        digest = hashlib.sha256(f"{log_digest(log)}{model}".encode()).hexdigest()
        if cached_digest(out) == digest:
            continue
        t0 = time.time()
        m = raw_maps(pred, log, context_prior=new_prior(pred), observed_channels={})   # network maps only
        ground = np.concatenate([g for g, _, _ in m["context_inputs"]])
        category = np.concatenate([c_ for _, c_, _ in m["context_inputs"]])
        with atomic_path(out) as tmp:
            np.savez(tmp, revealed=m["revealed"], object_recon=m["object_recon"],
                     object_forecast=m["object_forecast"], ground=ground, category=category,
                     digest=np.array(digest))
        print(name, log.log_id, f"{time.time() - t0:.0f}s", flush=True)


def cache_sets(pred, root: Path, sets: dict) -> None:
    """Simulate ``sets`` (name -> (logs, seed, configuration), 250 frames a log) under
    ``root/logs/<name>`` (read back instead where ``kept_logs``'s marker says the folder
    holds them) and cache ``pred``'s maps of every log (:func:`cache_maps`). The memory gate
    is refitted first on the ``"train"`` set's calibration tails, as
    ``OcclusionPredictor.calibrate`` does."""
    root.mkdir(parents=True, exist_ok=True)
    logs = {name: kept_logs(root / "logs" / name, n, 250, seed, c)
            for name, (n, seed, c) in sets.items()}
    pred.fit_memory_gate(pred.calibration_logs(logs["train"]))
    for name, items in logs.items():
        cache_maps(pred, root, name, items)


def main(world: str) -> None:
    configure_threads()
    cfg = TUNED[world]
    normal = replace(cfg, anomaly_interval_s=0.0)
    heldout, heldout_seed = HELDOUT[world]["config"], HELDOUT[world]["seed"]
    sets = {"train": (6, 1, normal), "tuned": (4, 2, cfg), "tuned_normal": (2, 502, normal),
            "extra": (6, 3, cfg), "extra_normal": (2, 503, normal),
            "heldout": (4, heldout_seed, heldout),
            "heldout_normal": (2, heldout_seed + 500, replace(heldout, anomaly_interval_s=0.0))}
    cache_sets(OcclusionPredictor.load(f"/tmp/drv19/models/{world}"), Path("/tmp/drv19/cache") / world, sets)


if __name__ == "__main__":
    main(sys.argv[1])
