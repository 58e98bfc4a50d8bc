"""The one training loop. Verticals supply a model, a loss and data; nothing else.

Handles device choice (model and every batch on one device; ``core.runtime``), bf16
autocast on CUDA (``precision``), seeding (a per-call ``torch.Generator``, never global
seeds), a held-out validation split with early stopping, gradient clipping, a cosine
learning-rate schedule, checkpoints, progress bars over epochs and batches
(``core.runtime.progress_bar``: stderr, quiet off a terminal) and,
when launched by ``torchrun``, DistributedDataParallel with a distributed sampler and
rank-0-only checkpoints, logging and progress.

The loss is a callable ``loss_fn(model, batch, generator) -> scalar tensor``; ``batch``
is whatever the dataset yields for a batch (a tuple of tensors for ``TensorDataset``),
already on the training device. ``generator`` is a seeded ``torch.Generator`` on CPU
for the loss's own random draws (masks); at validation it is re-seeded identically
every epoch, so validation losses are comparable across epochs. Under ``torchrun`` the
loss receives a view of the model on which calling the model *or any of its methods*
(``model.masked_errors(...)``) runs through DistributedDataParallel, so gradients are
averaged across processes whichever method the loss uses (one such call per step).

Example:
    >>> history = fit(model, TensorDataset(x), lambda m, b, g: ((m(b[0]) - b[0]) ** 2).mean(),
    ...               TrainConfig(max_epochs=5))                        # doctest: +SKIP
"""
from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from .io import atomic_path
from .runtime import autocast, check_precision, choose_device, configure_threads, progress_bar

LossFn = Callable[[nn.Module, object, torch.Generator], torch.Tensor]


@dataclass
class TrainConfig:
    """Hyper-parameters of the loop (the model's own live in the model's config)."""

    max_epochs: int = 50
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    val_fraction: float = 0.1
    patience: int = 8          # epochs in a row without validation improvement that stop it (0 acts as 1)
    min_delta: float = 1e-4    # relative improvement that counts (of |best|; losses may be < 0)
    grad_clip: float | None = 1.0
    schedule: str = "cosine"   # "cosine" or "constant"
    warmup_epochs: int = 0
    device: str = "auto"       # auto, cpu, cuda, cuda:N (core.runtime.choose_device)
    precision: str = "fp32"    # "bf16": CUDA autocast of the loss's forward passes
    num_threads: int | None = None
    checkpoint_dir: str | None = None
    # after each of these epoch counts, the best weights so far go to checkpoint_dir as
    # epoch-<n>.safetensors: what a run stopped there would return (its learning-rate
    # schedule aside), read off one longer run
    snapshot_epochs: tuple[int, ...] = ()
    progress: bool | None = None  # None: only when stderr is a terminal; False: quiet
    seed: int = 0
    max_steps_per_epoch: int | None = None


@dataclass
class History:
    """What ``fit`` returns: per-epoch losses and where it stopped."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = math.inf
    stopped_early: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


# --- distributed helpers -------------------------------------------------------------

class _Routed(nn.Module):
    """Runs ``inner`` or one of its methods as this module's forward, so that
    DistributedDataParallel sees (and synchronises the gradients of) every call."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, method: str | None, *args, **kwargs):
        return self.inner(*args, **kwargs) if method is None else getattr(self.inner, method)(*args, **kwargs)


class _DistributedView:
    """What a loss sees under torchrun: the model, with calls routed through DDP."""

    def __init__(self, ddp: nn.Module, model: nn.Module):
        self._ddp, self._model = ddp, model

    def __call__(self, *args, **kwargs):
        return self._ddp(None, *args, **kwargs)

    def __getattr__(self, name: str):
        value = getattr(self._model, name)
        if callable(value) and hasattr(value, "__self__") and not isinstance(value, nn.Module):
            return lambda *args, **kwargs: self._ddp(name, *args, **kwargs)
        return value

    def train(self, mode: bool = True):
        self._ddp.train(mode)
        return self

    def eval(self):
        return self.train(False)


def world() -> tuple[int, int]:
    """``(rank, world_size)`` from torchrun's environment (``(0, 1)`` otherwise)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_main_process() -> bool:
    return world()[0] == 0


def _init_distributed(device: torch.device) -> bool:
    import torch.distributed as dist

    rank, size = world()
    if size <= 1:
        return False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return True


def _all_reduce_mean(value: float, device: torch.device) -> float:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    if dist.get_backend() == "gloo":
        _wait_until_released(t)
    return float(t.item() / dist.get_world_size())


def _wait_until_released(tensor: torch.Tensor, timeout_s: float = 10.0) -> None:
    """Return once no reference but the caller's holds ``tensor`` (or after ``timeout_s``).

    gloo's ``all_reduce`` returns as soon as the result is ready, a moment before its worker
    thread drops the work that holds the tensor. A Python tensor whose last reference goes
    on that thread is freed there, under the GIL; when the rank exits in that moment (rank 1
    leaves while rank 0 still writes the bundle), the thread asks for the GIL during
    interpreter shutdown, which ends it inside a destructor: the process aborts with
    "terminate called without an active exception" (the mechanism of pytorch/pytorch pull
    request 179291; issue 190489 reports the abort). ``destroy_process_group`` does not
    help: gloo's worker threads outlive it once a DistributedDataParallel has been built on
    the group. NCCL's work is released by its watchdog thread, on its own schedule: not
    waited for here (not measured: this change was made without a GPU).
    """
    deadline = time.monotonic() + timeout_s
    while tensor._use_count() > 1 and time.monotonic() < deadline:
        time.sleep(1e-4)


# --- batching ------------------------------------------------------------------------

def _split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction)) if n >= 10 else 0
    return order[n_val:], order[:n_val]


def _batches(dataset: Dataset, indices: np.ndarray, batch_size: int, shuffle_rng,
             device: torch.device, rank: int, world_size: int):
    """Yield batches on ``device``. Tensor datasets are sliced directly (fast path)."""
    idx = shuffle_rng.permutation(indices) if shuffle_rng is not None else indices
    if world_size > 1:  # distributed sampler: equal shards, padded by wrapping around
        per_rank = math.ceil(len(idx) / world_size)
        idx = np.resize(idx, per_rank * world_size)[rank::world_size]
    if isinstance(dataset, TensorDataset):
        tensors = dataset.tensors
        for start in range(0, len(idx), batch_size):
            sel = torch.as_tensor(idx[start : start + batch_size])
            yield tuple(t[sel].to(device, non_blocking=True) for t in tensors)
        return
    loader = DataLoader(Subset(dataset, idx.tolist()), batch_size=batch_size, shuffle=False)
    for batch in loader:
        if isinstance(batch, (list, tuple)):
            yield tuple(b.to(device) if torch.is_tensor(b) else b for b in batch)
        elif isinstance(batch, dict):
            yield {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        else:
            yield batch.to(device)


def _lr_factor(config: TrainConfig, epoch: int) -> float:
    if config.warmup_epochs and epoch < config.warmup_epochs:
        return (epoch + 1) / config.warmup_epochs
    if config.schedule == "cosine":
        span = max(1, config.max_epochs - config.warmup_epochs)
        t = (epoch - config.warmup_epochs) / span
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t))
    return 1.0


def _show_progress(config: TrainConfig) -> bool | None:
    """``progress_bar``'s ``show``: never on a torchrun rank other than 0."""
    return config.progress if is_main_process() else False


def _steps_per_epoch(n_train: int, config: TrainConfig, world_size: int) -> int:
    steps = math.ceil(math.ceil(n_train / world_size) / config.batch_size)
    return min(steps, config.max_steps_per_epoch) if config.max_steps_per_epoch else steps


# --- the loop -------------------------------------------------------------------------

def fit(model: nn.Module, dataset: Dataset, loss_fn: LossFn, config: TrainConfig | None = None,
        val_dataset: Dataset | None = None, params=None) -> History:
    """Train ``model`` in place; on return it holds the best-validation weights.

    Args:
        model: a plain ``nn.Module``.
        dataset: training data; a held-out split of ``val_fraction`` is taken from it
            unless ``val_dataset`` is given.
        loss_fn: ``(model, batch, generator) -> loss``.
        config: loop settings.
        val_dataset: explicit validation data.
        params: parameters to optimise (default: all of ``model``'s).

    Returns:
        The :class:`History` of the run.
    """
    config = config or TrainConfig()
    if config.snapshot_epochs and not config.checkpoint_dir:
        raise ValueError("snapshot_epochs needs a checkpoint_dir to write the snapshots to")
    configure_threads(config.num_threads)
    device = choose_device(config.device)
    check_precision(config.precision, device)
    distributed = _init_distributed(device)
    rank, world_size = world()
    if distributed and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    model.to(device)
    train_model = model
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        train_model = _DistributedView(DistributedDataParallel(
            _Routed(model), device_ids=[device.index] if device.type == "cuda" else None), model)

    if val_dataset is None:
        train_idx, val_idx = _split(len(dataset), config.val_fraction, config.seed)
        val_source = dataset
    else:
        train_idx, val_idx = np.arange(len(dataset)), np.arange(len(val_dataset))
        val_source = val_dataset
    if len(train_idx) == 0:
        raise ValueError("training data is empty")

    optimizer = torch.optim.AdamW(params if params is not None else model.parameters(),
                                  lr=config.lr, weight_decay=config.weight_decay)
    base_lrs = [group["lr"] for group in optimizer.param_groups]  # groups may set their own
    shuffle_rng = np.random.default_rng(config.seed + 1)
    generator = torch.Generator().manual_seed(config.seed + 2)
    history = History()
    best_state = copy.deepcopy(model.state_dict())
    bad_epochs = 0
    started = time.perf_counter()
    show = _show_progress(config)
    n_steps = _steps_per_epoch(len(train_idx), config, world_size)
    bar = progress_bar(range(config.max_epochs), desc="train", unit="epoch", show=show)

    for epoch in bar:
        factor = _lr_factor(config, epoch)
        lr = config.lr * factor
        for group, base in zip(optimizer.param_groups, base_lrs):
            group["lr"] = base * factor
        train_model.train()
        total, count = 0.0, 0
        batches = progress_bar(_batches(dataset, train_idx, config.batch_size, shuffle_rng,
                                        device, rank, world_size),
                               desc=f"epoch {epoch + 1}", total=n_steps, unit="batch",
                               show=show, leave=False)
        for step, batch in enumerate(batches):
            if config.max_steps_per_epoch and step >= config.max_steps_per_epoch:
                break
            with autocast(device, config.precision):  # backward runs outside autocast
                loss = loss_fn(train_model, batch, generator)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch}; "
                                         "lower the learning rate or check the input scaling")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            total += float(loss.detach()) * _batch_len(batch)
            count += _batch_len(batch)
        batches.close()
        train_loss = _all_reduce_mean(total / max(count, 1), device)

        val_loss = train_loss
        if len(val_idx):
            val_loss = _evaluate(train_model, val_source, val_idx, loss_fn, config, device,
                                 rank, world_size)
        history.train_loss.append(train_loss)
        history.val_loss.append(val_loss)
        history.lr.append(lr)
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")

        best = history.best_val_loss
        improved = not math.isfinite(best) or val_loss < best - config.min_delta * abs(best)
        if improved:
            history.best_val_loss, history.best_epoch, bad_epochs = val_loss, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
            _save_weights(best_state, config, "best.safetensors", history)
        else:
            bad_epochs += 1
        if epoch + 1 in config.snapshot_epochs:   # written before a stop: the epoch counts
            _save_weights(best_state, config, f"epoch-{epoch + 1}.safetensors", history)
        if not improved and bad_epochs >= config.patience:   # an improving epoch goes on
            history.stopped_early = True
            break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    history.seconds = time.perf_counter() - started
    return history


def _batch_len(batch) -> int:
    if isinstance(batch, (list, tuple)):
        return len(batch[0])
    if isinstance(batch, dict):
        return len(next(iter(batch.values())))
    return len(batch)


@torch.no_grad()
def _evaluate(model, dataset, indices, loss_fn, config, device, rank, world_size) -> float:
    model.eval()
    generator = torch.Generator().manual_seed(config.seed + 3)  # same masks every epoch
    total, count = 0.0, 0
    for batch in _batches(dataset, indices, config.batch_size, None, device, rank, world_size):
        with autocast(device, config.precision):
            total += float(loss_fn(model, batch, generator)) * _batch_len(batch)
        count += _batch_len(batch)
    return _all_reduce_mean(total / max(count, 1), device)


def _save_weights(state: dict, config: TrainConfig, name: str, history: History) -> None:
    """Write ``state`` to ``config.checkpoint_dir / name`` (atomically; rank 0 only), with
    the best epoch and validation loss so far as metadata."""
    if not config.checkpoint_dir or not is_main_process():
        return
    directory = Path(config.checkpoint_dir)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / name) as tmp:
        tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        save_file(tensors, str(tmp), metadata={"epoch": str(history.best_epoch),
                                               "val_loss": str(history.best_val_loss)})
