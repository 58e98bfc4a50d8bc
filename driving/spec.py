"""Driving as core and the dashboard see it (:class:`core.verticals.VerticalSpec`),
published through the ``unmask.verticals`` entry point."""
from core.verticals import VerticalSpec

from .schema import CLASS_COLOURS

SPEC = VerticalSpec(
    name="driving",
    title="Driving (drive logs)",
    review_kind="bookmark",
    decisions=("bookmark",),
    demo="driving.demo:build_demo",
    demo_description="drive logs: simulate with occlusion, train the occlusion predictor, score",
    run_table="frames",
    item_count="n_frames",
    item_noun="frames",
    score_hint="`unmask driving --help` lists the commands that score your own drive logs.",
    order=3,
    palette=dict(CLASS_COLOURS),
)
