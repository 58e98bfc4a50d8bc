"""What a masked-consistency training step costs against a plain fine-tuning step.

Not part of the benchmark. One plain step (Dice + CE on a batch of 2 labelled crops: loss,
backward, optimiser) against one masked-consistency step (the same plus the EMA teacher's
update and forward on 2 unlabelled crops and the student's forward on them behind the
in-painting mask, ``medical.consistency.with_consistency``), on the ``small`` preset's
segmenter and crops, random inputs, one thread. The two are interleaved (``--rounds``
rounds of ``--steps`` steps each, after one warm-up step of each), so load that changes
during the run touches both; the ratio is the median of the rounds' ratios.

Run:
    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.medical_consistency_step_cost
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from core.runtime import configure_threads
from medical.consistency import with_consistency
from medical.presets import preset
from medical.segment import Segmenter, dice_ce_loss
from medical.transforms import PreprocessConfig

N_ORGANS = 5


def seconds_per_step(network, optimizer, loss_fn, batch, generator, steps: int) -> float:
    """Mean wall seconds of ``steps`` training steps (loss, backward, optimiser step)."""
    started = time.perf_counter()
    for _ in range(steps):
        loss = loss_fn(network, batch, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - started) / steps


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.experiments.medical_consistency_step_cost",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="steps of each kind per round")
    args = parser.parse_args(argv)
    configure_threads(1)
    _, config = preset("small")
    segmenter = Segmenter(config.network, PreprocessConfig(spacing=(6.0, 6.0, 7.5)),
                          {i: str(i) for i in range(1, N_ORGANS + 1)})
    network = segmenter.network.train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
    roi = config.network.roi_size
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(2, 1, *roi, generator=generator)                  # (B, 1, x, y, z)
    label = torch.randint(0, N_ORGANS + 1, (2, 1, *roi), generator=generator)
    unlabelled = torch.rand(2, 1, *roi, generator=generator)
    plain = (dice_ce_loss(), (image, label))
    masked = (with_consistency(dice_ce_loss(), network, config.consistency), (image, label, unlabelled))
    for loss_fn, batch in (plain, masked):                                 # warm-up
        seconds_per_step(network, optimizer, loss_fn, batch, generator, 1)
    ratios = []
    for _ in range(args.rounds):
        plain_s = seconds_per_step(network, optimizer, *plain, generator, args.steps)
        masked_s = seconds_per_step(network, optimizer, *masked, generator, args.steps)
        ratios.append(masked_s / plain_s)
        print(f"plain {plain_s:.3f} s, masked consistency {masked_s:.3f} s, ratio {ratios[-1]:.2f}",
              flush=True)
    print(f"median ratio {statistics.median(ratios):.2f}; 1-minute load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
