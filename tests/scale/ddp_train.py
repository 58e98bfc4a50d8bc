"""Trains a tiny model with core.training.fit; run under torchrun by test_torchrun.py."""
import json
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from core.bundle import save_bundle
from core.training import TrainConfig, fit, world


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 6))

    def forward(self, x):
        return self.net(x)

    def reconstruction_error(self, x):
        """A method other than forward, as the verticals' losses use (masked_errors etc.)."""
        return ((self.net(x) - x) ** 2).mean()


def train(out_dir: str, mode: str) -> None:
    Path(out_dir).mkdir(parents=True, exist_ok=True)  # both ranks write here
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(512, 6, generator=gen)
    model = Toy()
    torch.nn.init.normal_(model.net[0].weight, generator=torch.Generator().manual_seed(1))

    def loss_fn(m, batch, g):
        if mode == "method":
            return m.reconstruction_error(batch[0])
        return ((m(batch[0]) - batch[0]) ** 2).mean()

    history = fit(model, TensorDataset(x), loss_fn,
                  TrainConfig(max_epochs=3, batch_size=64, checkpoint_dir=f"{out_dir}/ckpt",
                              progress=False, num_threads=1))
    rank, size = world()
    weights = {k: v.flatten()[:4].tolist() for k, v in model.state_dict().items()}
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump({"world": size, "weights": weights, "train_loss": history.train_loss}, f)
    save_bundle(f"{out_dir}/bundle", "toy", {"world": size}, dict(model.state_dict()))


def main(out_dir: str, modes: str) -> None:
    """Train once per mode (comma-separated), each into ``out_dir/<mode>``: one launch covers
    them all (a torchrun launch costs three interpreters importing torch), and the second
    fit reuses the process group the first one started."""
    for mode in modes.split(","):
        train(f"{out_dir}/{mode}", mode)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
