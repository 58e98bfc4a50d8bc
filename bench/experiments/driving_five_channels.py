"""The product's frame scorer before ``pedestrian_conflict`` joined it (round 21), pinned for
the experiments whose committed results it made (``driving_step_out`` and its confirmation
and enriched sets, ``driving_conflict``'s ``product``, and the product arm of the older
experiments that score channels through a harness: ``driving_path_channel``,
``driving_lead_channel``, ...): they rerun as committed whatever channels the product gains."""
from collections.abc import Mapping
from types import MappingProxyType

from driving.scoring import frame_score as fs

FIVE_CHANNELS = (("revealed", True, 4), ("object_context", False, 24), ("object_recon", False, 16),
                 ("lead_closing", False, 1), ("path_reach", False, 1))
FIVE_CHANNEL_MIN_SCALE = MappingProxyType({"object_context": 0.5, "lead_closing": 0.02, "path_reach": 0.02})
FIVE_CHANNEL_OBSERVED = MappingProxyType(fs.registry_channels(("lead_closing", "path_reach")))


def five_channel_scorer(extra_channels: tuple = (), extra_min_scale: Mapping | None = None,
                        extra_observed: Mapping | None = None) -> fs.FrameScorer:
    """The unfitted five-channel scorer (:data:`FIVE_CHANNELS`), with ``extra_channels``
    appended (``(name, normalised, k)`` triples), their tail floors ``extra_min_scale`` and
    their observed-grid functions ``extra_observed`` (name -> function(log)): a candidate
    judged against it."""
    return fs.FrameScorer(FIVE_CHANNELS + tuple(extra_channels),
                          {**FIVE_CHANNEL_MIN_SCALE, **(extra_min_scale or {})},
                          {**FIVE_CHANNEL_OBSERVED, **(extra_observed or {})})
