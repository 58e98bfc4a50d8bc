"""Finance as core and the dashboard see it (:class:`core.verticals.VerticalSpec`),
published through the ``unmask.verticals`` entry point."""
from core.verticals import VerticalSpec

SPEC = VerticalSpec(
    name="finance",
    title="Finance (card transactions)",
    review_kind="disposition",
    decisions=("fraud", "legitimate", "needs_information"),
    demo="finance.demo:build_demo",
    demo_description="card transactions: simulate, train the masked-cell model, score, explain",
    run_table="scores",
    item_count="n_transactions",
    item_noun="transactions",
    score_hint="`unmask finance score --help` scores your own transactions into a run.",
    order=1,
)
