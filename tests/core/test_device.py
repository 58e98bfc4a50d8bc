"""Device choice: validated in one line, one device per model, bundles that load on CPU.

There is no GPU here, so a second device is played by torch's ``meta`` device: a network
left there after training (as ``fit`` leaves one on a GPU) cannot be mixed with CPU
tensors, and a check on what the network (or MONAI's sliding-window inferer) is fed
says whether every tensor followed it. The old code fed CPU tensors after training.
"""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import core.training
from core.cli import main
from core.errors import DeviceError
from core.runtime import check_precision, choose_device, module_device
from core.training import TrainConfig, fit

SHAPE = (32, 32, 16)


class Reached(Exception):
    """The network was called with every input on its own device."""


def _no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _fed(network, tensors, inferer=None) -> None:
    """Raise ``Reached`` if ``tensors`` (and the inferer's devices) are on the network's
    device, else fail naming the devices: a meta network cannot run, so stop here."""
    want = module_device(network)
    fed = [t.device for t in tensors if torch.is_tensor(t)]
    if inferer is not None:
        fed += [torch.device(inferer.sw_device or "cpu"), torch.device(inferer.device or "cpu")]
    assert fed and all(d == want for d in fed), f"network on {want} fed {fed}"
    raise Reached


def _check_inferer(monkeypatch):
    from monai.inferers import SlidingWindowInferer

    monkeypatch.setattr(SlidingWindowInferer, "__call__",
                        lambda self, inputs, network, *a, **k: _fed(network, [inputs], self))


def _left_on_meta(real_fit):
    """``fit`` as on a GPU machine: the trained network stays on the other device."""

    def fit_elsewhere(model, *args, **kwargs):
        history = real_fit(model, *args, **kwargs)
        model.to("meta")
        model.register_forward_pre_hook(lambda module, inputs: _fed(module, inputs))
        return history

    return fit_elsewhere


# --- the device string ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["gpu", "CUDA", "cuda:x", "cuda:", "", "cpu:0:1"])
def test_bad_device_names_are_one_line(name):
    with pytest.raises(DeviceError) as err:
        choose_device(name)
    assert "\n" not in str(err.value) and "expected auto, cpu, cuda or cuda:N" in str(err.value)


def test_cuda_requested_without_cuda(monkeypatch):
    _no_cuda(monkeypatch)
    assert choose_device("auto") == torch.device("cpu")
    assert choose_device("cpu") == torch.device("cpu")
    for name in ("cuda", "cuda:1"):
        with pytest.raises(DeviceError, match="cuda requested but not available"):
            choose_device(name)


def test_bf16_only_on_cuda():
    with pytest.raises(DeviceError, match="bf16 needs a CUDA device"):
        check_precision("bf16", torch.device("cpu"))
    with pytest.raises(DeviceError, match="expected one of fp32, bf16"):
        check_precision("fp16", torch.device("cpu"))
    assert check_precision("fp32", torch.device("cpu")) == "fp32"


def test_fit_refuses_before_training(monkeypatch):
    _no_cuda(monkeypatch)
    model = nn.Linear(2, 1)
    before = model.weight.detach().clone()
    data = TensorDataset(torch.randn(32, 2))
    loss = lambda m, b, g: m(b[0]).pow(2).mean()  # noqa: E731
    for config in (TrainConfig(device="cuda"), TrainConfig(device="cpu", precision="bf16")):
        with pytest.raises(DeviceError):
            fit(model, data, loss, config)
    assert torch.equal(model.weight, before)


COMMANDS = [
    ["finance", "train", "--data", "{tmp}/tx.parquet", "--out", "{tmp}/out"],
    ["finance", "score", "--model", "{tmp}/m", "--data", "{tmp}/tx.parquet", "--out", "{tmp}/out"],
    ["medical", "pretrain", "--data", "{tmp}", "--out", "{tmp}/out"],
    ["medical", "train", "--data", "{tmp}", "--out", "{tmp}/out"],
    ["medical", "infer", "--model", "{tmp}/m", "--images", "{tmp}", "--out", "{tmp}/out"],
    ["driving", "train", "--logs", "{tmp}", "--out", "{tmp}/out"],
    ["driving", "score", "--model", "{tmp}", "--logs", "{tmp}", "--out", "{tmp}/out"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize("option, message", [
    (["--device", "cuda"], "Error: --device cuda: cuda requested but not available"),
    (["--device", "tpu"], "Error: --device 'tpu': expected auto, cpu, cuda or cuda:N"),
    (["--device", "cpu", "--precision", "bf16"], "Error: --precision bf16 needs a CUDA device"),
    (["--precision", "bf16", "--device", "auto"], "Error: --precision bf16 needs a CUDA device"),
])
def test_cli_refuses_device_in_one_line(command, option, message, tmp_path, monkeypatch, capsys):
    _no_cuda(monkeypatch)
    argv = [a.format(tmp=tmp_path) for a in command] + option
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.startswith(message) and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


# --- every tensor on the model's device ----------------------------------------------

@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    from medical.phantom import simulate_dataset

    return simulate_dataset(tmp_path_factory.mktemp("ct"), 5, lesions=False, seed=0, shape=SHAPE)


def _tiny_configs():
    from medical.presets import preset

    pre, seg = preset("tiny")
    return (replace(pre, max_epochs=1, samples_per_epoch=4),
            replace(seg, max_epochs=1, samples_per_epoch=4))


def test_pretrain_calibrates_where_it_trained(phantoms, monkeypatch):
    """medical/pretrain.py fed calibration cases on CPU to a network left on the GPU."""
    import medical.anomaly
    import medical.pretrain

    monkeypatch.setattr(medical.anomaly, "fit", _left_on_meta(medical.anomaly.fit))
    _check_inferer(monkeypatch)
    with pytest.raises(Reached):
        medical.pretrain.pretrain(phantoms, None, _tiny_configs()[0], progress=False, device="cpu")


def test_organ_calibration_segments_where_the_segmenter_is(phantoms, monkeypatch):
    """medical/segment.py's organ calibration fed CPU tensors to the trained segmenter."""
    from medical.pretrain import healthy_cases, pretrain
    from medical.segment import Segmenter

    pre, _ = _tiny_configs()
    scorer = pretrain(phantoms, None, pre, progress=False, device="cpu")
    segmenter = Segmenter(scorer.network_config, scorer.preprocess, {1: "liver"})
    segmenter.network.to("meta")  # where fit left it
    _check_inferer(monkeypatch)
    with pytest.raises(Reached):
        scorer.calibrate(healthy_cases(phantoms)[:2], segmenter=segmenter)


def test_tabular_network_scores_where_it_trained(monkeypatch):
    from core import TabularDetector

    monkeypatch.setattr(core.training, "fit", _left_on_meta(core.training.fit))
    X = np.random.default_rng(0).normal(size=(200, 4))
    detector = TabularDetector(random_state=0, components=("network",), max_epochs=1,
                               n_learned_masks=2, hidden=8, latent=4, device="cpu")
    with pytest.raises(Reached):  # the calibration rows are scored by the network
        detector.fit(X)


def test_driving_calibrates_where_it_trained(monkeypatch, tmp_path):
    from driving.model.network import OcclusionNet

    logs = _drive_logs(tmp_path)
    monkeypatch.setattr(core.training, "fit", _left_on_meta(core.training.fit))
    # predict() runs forward directly, past module hooks: check what it is fed
    monkeypatch.setattr(OcclusionNet, "predict", lambda self, grids, speed: _fed(self, [grids, speed]))
    with pytest.raises(Reached):
        _predictor().fit(logs)


# --- bundles: the device is a runtime choice ------------------------------------------

def _drive_logs(tmp_path):
    from driving.demo import sim_config
    from driving.schema import read_log
    from driving.sim.simulator import simulate_logs

    config = replace(sim_config("tiny"), anomaly_interval_s=0.0)
    return [read_log(p) for p in simulate_logs(tmp_path / "logs", 2, 30, seed=1, config=config)]


def _predictor():
    from driving.model.predictor import OcclusionPredictor

    return OcclusionPredictor(history=(2,), future=(5,), widths=(8, 16, 32), epochs=1,
                              batch_size=16, max_steps_per_epoch=2, progress=False, device="cpu")


def _recorded_as_gpu(bundle, monkeypatch):
    """What a GPU run writes: its device among the saved parameters (weights are saved
    from CPU either way)."""
    path = bundle / "config.json"
    meta = json.loads(path.read_text())
    assert meta["config"]["params"]["device"] == "cpu"
    meta["config"]["params"].update(device="cuda:0", precision="bf16")
    path.write_text(json.dumps(meta))
    _no_cuda(monkeypatch)


def test_gpu_trained_tabular_bundle_loads_on_cpu(tmp_path, monkeypatch):
    from core import TabularDetector

    X = np.random.default_rng(0).normal(size=(300, 4))
    detector = TabularDetector(random_state=0, components=("network", "knn"), max_epochs=2,
                               n_learned_masks=2, hidden=8, latent=4, device="cpu").fit(X)
    detector.save(tmp_path / "m")
    _recorded_as_gpu(tmp_path / "m", monkeypatch)
    loaded = TabularDetector.load(tmp_path / "m")
    assert (loaded.device, loaded.precision) == ("cpu", "fp32")
    assert module_device(loaded.modules_["network"]) == torch.device("cpu")
    np.testing.assert_array_equal(loaded.decision_function(X[:50]), detector.decision_function(X[:50]))


def test_gpu_trained_driving_bundle_loads_on_cpu(tmp_path, monkeypatch):
    from driving.model.predictor import OcclusionPredictor

    logs = _drive_logs(tmp_path)
    predictor = _predictor().fit(logs)
    predictor.save(tmp_path / "m")
    _recorded_as_gpu(tmp_path / "m", monkeypatch)
    loaded = OcclusionPredictor.load(tmp_path / "m", device="cpu")
    assert (loaded.device, loaded.precision) == ("cpu", "fp32")
    assert module_device(loaded.net_) == torch.device("cpu")
    np.testing.assert_allclose(loaded.decision_function(logs[0]), predictor.decision_function(logs[0]),
                               rtol=0, atol=1e-6)


def test_medical_bundles_load_on_the_asked_device(phantoms, tmp_path):
    from medical.anomaly import AnomalyScorer
    from medical.infer import load_models
    from medical.segment import train_segmenter
    from medical.transforms import Preprocessor
    from medical.volumes import prepare_case
    from medical.pretrain import healthy_cases, pretrain

    pre, seg = _tiny_configs()
    scorer = pretrain(phantoms, tmp_path / "pre", pre, progress=False, device="cpu")
    config = json.loads((tmp_path / "pre" / "config.json").read_text())
    assert "device" not in json.dumps(config["config"])
    train_segmenter(phantoms, tmp_path / "ct", tmp_path / "pre", 2, seg, progress=False, device="cpu")
    segmenter, loaded = load_models(tmp_path / "ct", device="cpu")
    assert segmenter.device == loaded.device == torch.device("cpu")
    image = prepare_case(healthy_cases(phantoms)[0], Preprocessor(scorer.preprocess)).image.as_tensor()
    reloaded = AnomalyScorer.load(tmp_path / "pre", device="cpu")
    np.testing.assert_array_equal(reloaded.error_map(image), scorer.error_map(image))
