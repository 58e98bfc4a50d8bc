"""Bundles: a saved model is a directory with ``config.json`` + ``weights.safetensors``.

No pickle anywhere. ``config.json`` records the format version, the model kind, every
hyper-parameter and preprocessing state the caller passes, library versions and the
SHA-256 of the weights, so a tampered or truncated weights file is caught before use.

Example:
    >>> save_bundle("model", kind="tabular", config={"n_features": 3},
    ...             tensors={"w": torch.zeros(3)})            # doctest: +SKIP
    >>> config, tensors = load_bundle("model", kind="tabular")  # doctest: +SKIP

Each kind versions its own content: ``save_bundle(..., version=2)`` after a change to what
a kind stores, and ``load_bundle(..., version=2)`` refuses the older bundles in one line
that says to retrain (no silent defaults for older shapes) and newer ones with one that
says to upgrade.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

import numpy
import torch
import safetensors.torch
from safetensors import SafetensorError

from . import __version__
from .errors import BundleError
from .io import atomic_path, read_json_object
from .training import is_main_process

FORMAT_VERSION = 1  # the version of a kind that never changed what it stores
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "weights.safetensors"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _versions() -> dict:
    return {"unmask": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


def save_bundle(path: str | os.PathLike, kind: str, config: dict, tensors: dict,
                version: int = FORMAT_VERSION) -> Path:
    """Write a bundle directory atomically (a failed save leaves any old bundle intact).

    Args:
        path: target directory.
        kind: model kind, checked on load (e.g. ``"tabular"``, ``"ct-segmenter"``).
        config: JSON-serialisable hyper-parameters and fitted state.
        tensors: name -> ``torch.Tensor`` (contiguous, saved with safetensors).
        version: the kind's format version (bump it when what the kind stores changes).

    Returns:
        The bundle path.
    """
    path = Path(path)
    if not is_main_process():  # under torchrun every rank holds the same weights
        return path
    with atomic_path(path) as tmp:
        tmp.mkdir()
        weights = tmp / WEIGHTS_NAME
        contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        safetensors.torch.save_file(contiguous, str(weights))
        meta = {"format_version": version, "kind": kind, "versions": _versions(),
                "weights": {"file": WEIGHTS_NAME, "sha256": _sha256(weights)}, "config": config}
        (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return path


def read_bundle_config(path: str | os.PathLike, kind: str | None = None,
                       version: int | None = None, oldest: int | None = None) -> dict:
    """Read and check ``config.json``; returns the whole metadata dict.

    Args:
        path: the bundle directory.
        kind: the model kind it must hold (None: any).
        version: the format version it must have (None: any; e.g. to learn the kind).
        oldest: with ``version``, the oldest format still read (None: ``version`` only).
    """
    path = Path(path)
    cfg_path = path / CONFIG_NAME
    if not path.is_dir():
        raise BundleError(f"{path}: no model bundle here (expected a directory with {CONFIG_NAME})")
    if not cfg_path.is_file():
        raise BundleError(f"{cfg_path}: missing; {path} is not a model bundle{_held_bundles(path)}")
    meta = read_json_object(cfg_path, BundleError)
    if not isinstance(meta.get("format_version"), int):
        raise BundleError(f"{cfg_path}: no integer 'format_version'")
    if kind is not None and meta.get("kind") != kind:
        raise BundleError(f"{path}: bundle holds a {meta.get('kind')!r} model, expected {kind!r}")
    _check_version(cfg_path, meta, version, oldest)
    weights = meta.get("weights")
    if not (isinstance(weights, dict) and isinstance(weights.get("file"), str)
            and isinstance(weights.get("sha256"), str) and isinstance(meta.get("config"), dict)):
        raise BundleError(f"{cfg_path}: no 'weights' file and sha256 or no 'config' object")
    return meta


def _held_bundles(path: Path) -> str:
    """``" (it holds bundles: segmenter/ ('ct-segmenter'), ...)"`` for a folder of bundles
    given where one bundle was expected (a medical model folder, say); ``""`` otherwise."""
    held = []
    for sub in sorted(p for p in path.iterdir() if (p / CONFIG_NAME).is_file()):
        try:
            kind = json.loads((sub / CONFIG_NAME).read_text()).get("kind")
        except (OSError, ValueError, AttributeError):
            kind = None
        held.append(f"{sub.name}/ ({kind!r})" if isinstance(kind, str) else f"{sub.name}/")
    return f" (it holds bundles: {', '.join(held)})" if held else ""


def _check_version(cfg_path: Path, meta: dict, expected: int | None,
                   oldest: int | None = None) -> None:
    """Refuse a bundle whose format version is not ``expected`` (or, with ``oldest``, not
    in ``oldest .. expected``) in one line: what to do."""
    found = meta["format_version"]
    lowest = expected if oldest is None else oldest
    if expected is None or lowest <= found <= expected:
        return
    if found > expected:
        raise BundleError(f"{cfg_path}: bundle format version {found} is newer than this "
                          f"unmask supports ({expected}); upgrade unmask to load it")
    saved_by = (meta.get("versions") or {}).get("unmask", "an older unmask")
    raise BundleError(f"{cfg_path}: bundle format version {found} (saved by unmask {saved_by}) "
                      f"is older than this unmask reads ({lowest}); retrain the model")


def load_bundle(path: str | os.PathLike, kind: str | None = None,
                version: int = FORMAT_VERSION, oldest: int | None = None) -> tuple[dict, dict]:
    """Load a bundle: returns ``(config, tensors)`` after checking kind, format ``version``
    (or ``oldest`` .. ``version``) and checksum."""
    path = Path(path)
    meta = read_bundle_config(path, kind, version, oldest)
    weights = path / meta["weights"]["file"]
    if not weights.is_file():
        raise BundleError(f"{weights}: weights file missing")
    if _sha256(weights) != meta["weights"]["sha256"]:
        raise BundleError(f"{weights}: checksum mismatch; the weights file is truncated or "
                          "was modified after saving")
    try:
        tensors = safetensors.torch.load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise BundleError(f"{weights}: cannot read weights ({err})") from None
    return meta["config"], tensors
