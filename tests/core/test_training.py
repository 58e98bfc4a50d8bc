"""The one training loop: learning, early stopping, determinism, checkpoints."""
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from core.training import TrainConfig, fit


def _data(seed=0, n=256):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0]) + 0.01 * torch.randn(n, generator=g)
    return TensorDataset(x, y[:, None])


def _model(seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(4, 1)


def mse(model, batch, generator):
    x, y = batch
    return ((model(x) - y) ** 2).mean()


def test_fit_learns_and_reports_history():
    model = _model()
    history = fit(model, _data(), mse, TrainConfig(max_epochs=60, lr=0.05, batch_size=32,
                                                   progress=False, device="cpu"))
    assert history.val_loss[-1] < 0.1 * history.val_loss[0]
    assert len(history.train_loss) == len(history.val_loss) == len(history.lr)
    assert history.lr[0] > history.lr[-1]  # cosine schedule decays
    assert history.best_val_loss == min(history.val_loss)
    assert not model.training  # returned in eval mode


def test_early_stopping_restores_best_weights():
    model = _model()
    # a large constant learning rate converges, then stalls: early stopping must trigger
    config = TrainConfig(max_epochs=200, lr=0.5, batch_size=256, patience=3, progress=False,
                         device="cpu", schedule="constant")
    history = fit(model, _data(), mse, config)
    assert history.stopped_early and len(history.val_loss) < 200
    assert len(history.val_loss) - 1 - history.best_epoch == 3
    best = history.best_val_loss
    with torch.no_grad():
        x, y = _data().tensors
        # the model holds the best-validation weights, not the last ones
        from core.training import _split
        _, val_idx = _split(len(x), 0.1, 0)
        val = float(((model(x[val_idx]) - y[val_idx]) ** 2).mean())
    assert abs(val - best) < 1e-5


def test_same_seed_same_weights_and_masks():
    def masked_loss(m, batch, generator):
        x, y = batch
        keep = (torch.rand(x.shape, generator=generator) > 0.3).float()
        return ((m(x * keep) - y) ** 2).mean()

    weights = []
    for _ in range(2):
        model = _model()
        fit(model, _data(), masked_loss, TrainConfig(max_epochs=5, seed=7, progress=False,
                                                     device="cpu"))
        weights.append(model.weight.detach().clone())
    assert torch.equal(weights[0], weights[1])
    other = _model()
    fit(other, _data(), masked_loss, TrainConfig(max_epochs=5, seed=8, progress=False,
                                                 device="cpu"))
    assert not torch.equal(other.weight, weights[0])


def test_checkpoint_holds_best_weights(tmp_path):
    from safetensors.torch import load_file

    model = _model()
    history = fit(model, _data(), mse, TrainConfig(max_epochs=10, lr=0.05, progress=False,
                                                   device="cpu", checkpoint_dir=str(tmp_path)))
    saved = load_file(str(tmp_path / "best.safetensors"))
    assert torch.equal(saved["weight"], model.weight.detach())
    assert history.best_epoch >= 0


def test_snapshots_hold_what_a_shorter_run_returns(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    def config(epochs, **kw):   # a constant rate: the first epochs of a longer run are a shorter run
        return TrainConfig(max_epochs=epochs, lr=0.05, batch_size=32, progress=False, device="cpu",
                           schedule="constant", **kw)

    model = _model()
    fit(model, _data(), mse, config(10, checkpoint_dir=str(tmp_path), snapshot_epochs=(3, 10)))
    assert sorted(p.name for p in tmp_path.glob("epoch-*")) == ["epoch-10.safetensors",
                                                                "epoch-3.safetensors"]
    assert torch.equal(load_file(str(tmp_path / "epoch-10.safetensors"))["weight"], model.weight.detach())
    shorter = _model()
    history = fit(shorter, _data(), mse, config(3))
    assert torch.equal(load_file(str(tmp_path / "epoch-3.safetensors"))["weight"], shorter.weight.detach())
    with safe_open(str(tmp_path / "epoch-3.safetensors"), "pt") as saved:
        assert saved.metadata()["epoch"] == str(history.best_epoch)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        fit(_model(), _data(), mse, config(3, snapshot_epochs=(2,)))


def test_non_finite_loss_is_reported():
    def bad(m, batch, generator):
        return mse(m, batch, generator) * float("nan")

    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        fit(_model(), _data(), bad, TrainConfig(max_epochs=2, progress=False, device="cpu"))


@pytest.mark.parametrize("patience", [0, 1, 3])
def test_early_stopping_works_with_negative_losses(patience):
    # A likelihood-style loss can be negative; a flat loss must still stop early, after
    # `patience` epochs without improvement -- never on the first, improving, epoch
    model = nn.Linear(2, 1)
    data = TensorDataset(torch.randn(64, 2))

    def flat_negative(m, batch, g):
        return m(batch[0]).sum() * 0.0 - 1.0

    history = fit(model, data, flat_negative,
                  TrainConfig(max_epochs=20, patience=patience, batch_size=32, progress=False))
    assert history.stopped_early and len(history.val_loss) == 1 + max(patience, 1)
    assert history.best_epoch == 0 and history.best_val_loss == -1.0


def test_parameter_groups_keep_their_own_learning_rates():
    # a group with lr=0 must stay frozen under the schedule (it used to be overwritten
    # with the config's lr every epoch, so per-group rates had no effect)
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 1))
    frozen, start = model[0].weight.detach().clone(), model[1].weight.detach().clone()
    params = [{"params": model[0].parameters(), "lr": 0.0}, {"params": model[1].parameters()}]
    fit(model, _data(), mse, TrainConfig(max_epochs=5, lr=0.05, batch_size=32, progress=False,
                                         device="cpu"), params=params)
    assert torch.equal(model[0].weight, frozen)
    assert not torch.equal(model[1].weight, start)


def test_loss_all_reduce_returns_once_the_worker_let_go_of_the_tensor(monkeypatch):
    """gloo's worker thread drops its reference to the reduced tensor a moment after the
    result is ready; a rank exiting in that moment aborted ("terminate called without an
    active exception"), so the mean is returned only once that reference is gone."""
    import threading
    import time

    import torch.distributed as dist

    from core import training

    dropped = threading.Event()

    def all_reduce(tensor):           # the sum over two ranks, and a late worker thread
        tensor.mul_(2)
        held = [tensor.view(-1)]      # a C++ reference to the tensor, as gloo's work holds

        def worker():
            time.sleep(0.3)
            dropped.set()
            held.clear()
        threading.Thread(target=worker).start()

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_backend", lambda: "gloo")
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    assert training._all_reduce_mean(1.5, torch.device("cpu")) == 1.5
    assert dropped.is_set()
