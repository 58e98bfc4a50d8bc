"""The ``inpaint_invariant`` pretext (medical.dense_contrast): in-painting plus a dense InfoNCE
loss between a crop and a remapped view of it. The loss learns, the two views differ only in
intensity, the embedding channels stay out of the anomaly output, and a bundle pretrained with
it loads, scores and hands the segmenter the same encoder as in-painting's."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from medical.anomaly import AnomalyScorer
from medical.dense_contrast import EMBED, N_POINTS, STRIDE, lattice_points
from medical.io import find_cases
from medical.networks import build_network, transferable_keys
from medical.presets import preset
from medical.pretrain import pretrain
from medical.reconstruction import (INVARIANT, invariance_loss, masked_input, output_channels,
                                    reconstruction_loss)
from medical.segment import Segmenter, train_segmenter
from medical.training_cases import labelled_cases
from medical.transforms import Preprocessor, PreprocessConfig
from medical.volumes import prepare_case


def _crops(batch: int = 4) -> torch.Tensor:
    """Tiny bodies ``(batch, 1, 32, 32, 16)``: an ellipsoid of tissue holding a brighter and a
    darker organ, with noise, in air (0)."""
    generator = torch.Generator().manual_seed(0)
    x, y, z = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32),
                             torch.linspace(-1, 1, 16), indexing="ij")
    body = (x ** 2 + y ** 2 + z ** 2 < 0.8).float()
    crops = []
    for shift in torch.linspace(-0.2, 0.2, batch):
        bright = ((x - 0.3 - shift) ** 2 + y ** 2 + z ** 2 < 0.1).float()
        dark = ((x + 0.3) ** 2 + (y - shift) ** 2 + z ** 2 < 0.08).float()
        crops.append(body * (0.5 + 0.3 * bright - 0.25 * dark
                             + 0.02 * torch.randn(x.shape, generator=generator)))
    return torch.stack(crops)[:, None]


def _tiny_network(pretext: str = INVARIANT):
    config, _ = preset("tiny")
    return config, build_network(config.network, output_channels(pretext)).train()


def _fixed_loss(loss, network, crops) -> float:
    with torch.no_grad():
        return float(loss(network, (crops,), torch.Generator().manual_seed(0)))


def _fixed_invariance(network, crops) -> float:
    hidden = torch.zeros_like(crops)
    with torch.no_grad():
        embedding = network(masked_input(crops, hidden))[:, 2:]
        return float(invariance_loss(network, crops, hidden, embedding, np.random.default_rng(0)))


def test_loss_is_finite_and_falls_over_a_few_steps():
    config, network = _tiny_network()
    crops = _crops()
    loss = reconstruction_loss(config.anomaly.masker(), pretext=INVARIANT)
    before, invariance_before = _fixed_loss(loss, network, crops), _fixed_invariance(network, crops)
    assert np.isfinite(before)
    optimiser = torch.optim.Adam(network.parameters(), lr=5e-3)
    generator = torch.Generator().manual_seed(1)
    for _ in range(25):
        optimiser.zero_grad()
        step = loss(network, (crops,), generator)
        assert torch.isfinite(step)
        step.backward()
        optimiser.step()
    assert _fixed_loss(loss, network, crops) < before
    # the contrastive term itself learns, not only the in-painting beside it
    assert _fixed_invariance(network, crops) < invariance_before


class Recorder(torch.nn.Module):
    """Wraps a network and keeps every input it is given."""

    def __init__(self, network):
        super().__init__()
        self.network, self.inputs = network, []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return self.network(x)


def test_the_two_views_differ_in_intensity_behind_the_same_mask():
    config, network = _tiny_network()
    crops = _crops(2)
    recorder = Recorder(network)
    _fixed_loss(reconstruction_loss(config.anomaly.masker(), pretext=INVARIANT), recorder, crops)
    assert len(recorder.inputs) == 2      # the crop as it is, then its remapped view
    (first_seen, first_hidden), (second_seen, second_hidden) = (
        (x[:, :1], x[:, 1:]) for x in recorder.inputs)
    assert torch.equal(first_hidden, second_hidden)
    visible = first_hidden == 0
    assert first_hidden.sum() > 0 and visible.sum() > 0
    assert torch.equal(first_seen, crops * visible)          # in-painting's input, unchanged
    assert float(second_seen[~visible].abs().max()) == 0.0    # hidden in both views
    assert float((second_seen - first_seen).abs()[visible].mean()) > 0.05


def test_sampled_voxels_lie_in_the_body_on_a_lattice_with_no_neighbours():
    body = np.zeros((48, 48, 32), dtype=bool)
    body[4:44, 4:44, 2:30] = True
    points = lattice_points(body, np.random.default_rng(0))
    assert len(points) == N_POINTS          # more lattice voxels in the body than that
    assert body.flat[points].all()
    coords = np.stack(np.unravel_index(points, body.shape), axis=1)
    assert len({tuple(c % STRIDE) for c in coords}) == 1   # one lattice offset
    few = np.zeros_like(body)
    few[10, 10, 10] = True
    assert len(lattice_points(few, np.random.default_rng(0))) <= 1


def _output_bias(network) -> torch.Tensor:
    """The bias of the tiny UNet's last layer (a bare convolution: its channel c is output c)."""
    last = [m for m in network.modules() if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d))][-1]
    return last.bias


def test_embedding_channels_are_not_in_the_anomaly_output():
    config, _ = preset("tiny")
    grid = PreprocessConfig(spacing=(12.0, 12.0, 12.0))
    scorer = AnomalyScorer(config.network, grid, replace(config.anomaly, pretext=INVARIANT))
    plain = AnomalyScorer(config.network, grid, config.anomaly)
    assert _output_bias(scorer.network).shape[0] == 2 + EMBED
    assert _output_bias(plain.network).shape[0] == 2   # the default pretext: as before
    image = _crops(1)[0].numpy()
    mean, sd = scorer.reconstruct(image)
    assert mean.shape == sd.shape == image.shape[1:]
    with torch.no_grad():
        _output_bias(scorer.network)[2:] += 5.0
    np.testing.assert_array_equal(scorer.reconstruct(image)[0], mean)
    np.testing.assert_array_equal(scorer.reconstruct(image)[1], sd)
    with torch.no_grad():
        _output_bias(scorer.network)[0] += 0.1           # the mean channel does reach it
    assert not np.array_equal(scorer.reconstruct(image)[0], mean)


def test_the_sliding_window_blends_the_mean_and_log_variance_only(monkeypatch):
    """The embedding channels are not blended over the volume (18 channels, ~5.6 GB at
    512 x 512 x 300); the two blended are those of the full blend."""
    from monai.inferers import SlidingWindowInferer

    config, _ = preset("tiny")
    grid = PreprocessConfig(spacing=(12.0, 12.0, 12.0))
    scorer = AnomalyScorer(config.network, grid, replace(config.anomaly, pretext=INVARIANT))
    calls, blend = [], SlidingWindowInferer.__call__

    def recorded(inferer, inputs, network, *args, **kwargs):
        output = blend(inferer, inputs, network, *args, **kwargs)
        calls.append((inferer, inputs, output))
        return output
    monkeypatch.setattr(SlidingWindowInferer, "__call__", recorded)
    scorer.reconstruct(_crops(1)[0].numpy())
    assert calls
    assert {output.shape[1] for _, _, output in calls} == {2}     # channels blended
    inferer, inputs, output = calls[-1]
    with torch.no_grad():
        full = blend(inferer, inputs, scorer.network)                # every channel
    assert full.shape[1] == 2 + EMBED
    torch.testing.assert_close(output, full[:, :2], rtol=0, atol=0)


def test_a_pretrained_bundle_loads_scores_and_gives_the_segmenter_the_encoder(tiny_data, tmp_path):
    config, segment_config = preset("tiny")
    config = replace(config, max_epochs=1, samples_per_epoch=4,
                     anomaly=replace(config.anomaly, pretext=INVARIANT))
    pretrain(tiny_data[0], tmp_path / "pretrained", config, progress=False)
    scorer = AnomalyScorer.load(tmp_path / "pretrained")
    assert scorer.config.pretext == INVARIANT
    assert _output_bias(scorer.network).shape[0] == 2 + EMBED
    images = [prepare_case(c, Preprocessor(scorer.preprocess)).image.as_tensor()
              for c in find_cases(tiny_data[1])]
    assert np.isfinite(scorer.decision_function(images)).all()
    # the segmenter takes the same tensors as from an in-painting network of that shape
    segmenter = Segmenter(scorer.network_config, scorer.preprocess, {1: "a", 2: "b"})
    plain = AnomalyScorer(scorer.network_config, scorer.preprocess, replace(config.anomaly, pretext="inpaint"))
    for encoder_only in (True, False):
        taken = transferable_keys(scorer.network.state_dict(), segmenter.network, encoder_only)
        assert taken == transferable_keys(plain.network.state_dict(), segmenter.network, encoder_only)
    encoder = transferable_keys(scorer.network.state_dict(), segmenter.network, True)
    assert encoder and segment_config.encoder_only
    trained = train_segmenter(tiny_data[0], None, tmp_path / "pretrained", progress=False,
                              cases=labelled_cases(tiny_data[0], 2),
                              config=replace(segment_config, max_epochs=1, samples_per_epoch=4))
    assert trained.transferred_ == len(encoder)   # initialised from the bundle's encoder
