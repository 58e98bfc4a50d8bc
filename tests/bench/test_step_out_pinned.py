"""The step-out experiments' scorers are pinned to the channels their committed results were
made with (``driving_five_channels.five_channel_scorer``), not to the product's default, which
has since gained ``pedestrian_conflict``: a rerun of their stages reproduces the JSON."""
import json

from bench.experiments.driving_conflict import CHANNEL, FRESH
from bench.experiments.driving_five_channels import five_channel_scorer
from bench.experiments.driving_step_out import CANDIDATES, OUT, channel_keys
from bench.experiments.driving_step_out_enriched import ENRICHED
from driving.scoring import frame_score as fs


def test_the_pinned_scorer_has_the_channels_the_diagnosis_was_made_with():
    committed = json.loads(OUT.read_text())["diagnosis"]["all_frames"]["top_channel"]
    assert channel_keys(five_channel_scorer()) == list(committed)
    assert list(committed) == ["revealed", "object_context_raw", "object_recon_raw", "lead_closing_raw",
                               "path_reach_raw"]


def test_the_pinned_scorer_is_not_the_products_default():
    names = [name for name, _, _ in five_channel_scorer().channels]
    assert CHANNEL in [name for name, _, _ in fs.FrameScorer().channels] and CHANNEL not in names
    assert set(five_channel_scorer().observed_channels) == {"lead_closing", "path_reach"}


def test_every_arm_judged_against_the_five_channels_adds_only_its_own():
    base = five_channel_scorer().channels
    extra = {name: tuple(c for c in scorer().channels if c not in base) for name, scorer in CANDIDATES.items()}
    assert extra == {"product": (), "road_pedestrians_in_path_reach": (("path_reach_road", False, 1),),
                     "pedestrian_reach_channel": (("pedestrian_reach", False, 1),)}
    assert ENRICHED.scorers["product"] is five_channel_scorer and FRESH.scorers["product"] is five_channel_scorer
    assert FRESH.scorers[FRESH.candidate]().channels == base + ((CHANNEL, False, 1),)
