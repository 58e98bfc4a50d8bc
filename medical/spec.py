"""Medical (CT) as core and the dashboard see it (:class:`core.verticals.VerticalSpec`),
published through the ``unmask.verticals`` entry point."""
from core.verticals import VerticalSpec

SPEC = VerticalSpec(
    name="medical",
    title="Medical (CT)",
    review_kind="review",
    decisions=("accept", "reject", "needs_correction"),
    demo="medical.demo:build_demo",
    demo_description="CT phantoms: simulate, pretrain by inpainting, segment, anomaly maps",
    run_table="scores",
    item_count="n_cases",
    item_noun="cases",
    score_hint="`unmask medical infer --help` scores your own CT volumes into a run.",
    order=2,
)
