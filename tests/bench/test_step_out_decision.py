"""``bench.experiments.driving_step_out``'s committed decision is what its rule gives on its
committed results: the candidates' rows and the product's row rebuilt from its kept runs
(``product_from_runs``: the diagnosis and the pinned ``product_tuned`` column)."""
import json

from bench.experiments.driving_step_out import OUT, decide, product_from_runs


def test_the_rule_reproduces_the_committed_decision():
    kept = json.loads(OUT.read_text())
    assert decide({"product": product_from_runs(kept), **kept["candidates"]}) == kept["decision"]
