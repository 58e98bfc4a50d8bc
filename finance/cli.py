"""`unmask finance`: thin CLI over the finance Python API."""
from __future__ import annotations

import json

import click

from core.cli_options import export_options, plain_warnings, runtime_options, show_progress


@click.group()
def finance():
    """Card-fraud detection: simulate, train, score, evaluate, explain."""


@finance.command()
@click.option("--customers", default=5000, show_default=True, help="Number of customers.")
@click.option("--terminals", default=10000, show_default=True, help="Number of terminals.")
@click.option("--days", default=183, show_default=True, help="Number of days.")
@click.option("--seed", default=0, show_default=True, help="Random seed (same seed = same file).")
@click.option("--schema", "world", default="native", show_default=True, type=click.Choice(["native", "world2"]),
              help="native: unmask's own columns (Fraud Detection Handbook style); world2: another bank's "
                   "columns, codings, population and fraud (card, merchant, ts, amt, entry_mode CNP/CP, "
                   "lat/lon, mcc, device, refunds); its mapping is written beside the file (.schema.toml).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output Parquet (or CSV) file.")
def simulate(customers, terminals, days, seed, world, out):
    """Simulate labelled card transactions."""
    if world == "world2":
        from .world2 import World2Config, simulate_to_file  # lazy: the command loads torch/DuckDB only when it runs

        path, mapping = simulate_to_file(out, World2Config(n_cards=customers, n_merchants=terminals,
                                                            n_days=days, seed=seed))
        click.echo(f"wrote {path} and its mapping {mapping}")
        return
    import pyarrow.parquet as pq

    from .simulator import SimulatorConfig, simulate_to_parquet  # lazy: the command loads torch/DuckDB only when it runs

    simulate_to_parquet(out, SimulatorConfig(n_customers=customers, n_terminals=terminals,
                                             n_days=days, seed=seed))
    meta = pq.read_metadata(out)
    click.echo(f"wrote {meta.num_rows} transactions to {out}")


@finance.command()
@click.option("--data", required=True, type=click.Path(exists=True), help="Transactions (Parquet/CSV).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Model directory.")
@click.option("--until", default=None, help="Train on transactions before this date (ISO 8601).")
@click.option("--labels", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Confirmed dispositions (transaction_id, decision or is_fraud, confirmed_at): delayed "
                   "risk features and, with >= 5 frauds and 5 legitimate ones, the supervised head.")
@click.option("--reviews", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Review store (reviews.sqlite) with finance dispositions.")
@click.option("--delay-days", default=7.0, show_default=True, help="Feedback delay in days.")
@click.option("--seed", default=0, show_default=True, help="Model random state.")
@click.option("--max-train-rows", default=200_000, show_default=True, help="Sample at most this many rows.")
@click.option("--max-steps", default=None, type=int, help="Cap on the network's optimiser steps.")
@click.option("--min-history", default=3, show_default=True,
              help="A card with fewer earlier transactions in 30 days is 'warming up' when scored: marked, "
                   "never alerted (its features have no history to compare with yet).")
@click.option("--min-history-days", default=7.0, show_default=True,
              help="So is a card first seen in the scored file fewer than this many days before.")
@click.option("--timezone", default="UTC", show_default=True,
              help="Zone that timestamps with a UTC offset (or tz-aware Parquet) are converted to; times "
                   "without one are local wall-clock time and kept. Saved with the model for scoring.")
@click.option("--schema-file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="TOML mapping of your columns and codings to roles (see finance/mapping.py). Saved "
                   "with the model: score reads files the same way.")
@click.option("--map", "maps", multiple=True, metavar="ROLE=COLUMN",
              help="One mapping entry, e.g. --map card=card_no --map merchant=shop "
                   "--map channel.card_not_present=CNP,ecom --map location.billing=lat,lon "
                   "--map locations.units=degrees --map categorical=mcc,device (wins over --schema-file).")
@click.option("--refunds", is_flag=True, default=None,
              help="Accept negative amounts as refunds: kept in the cards' history, never scored.")
@runtime_options
def train(data, out, until, labels, reviews, delay_days, seed, max_train_rows, max_steps, min_history,
          min_history_days, timezone,
          schema_file, maps, refunds, device, precision, quiet):
    """Fit the masked-reconstruction detector on point-in-time features (plus the supervised
    feedback head when analysts' dispositions are given)."""
    from .detector import FinanceModelConfig  # lazy: the command loads torch/DuckDB only when it runs
    from .mapping import build  # lazy: the command loads torch/DuckDB only when it runs
    from .train import train as train_model  # lazy: the command loads torch/DuckDB only when it runs

    config = FinanceModelConfig(random_state=seed, max_train_rows=max_train_rows, min_history=min_history,
                                min_history_days=min_history_days)
    if max_steps is not None:
        config.detector_params["max_steps"] = max_steps
    mapping = build(schema_file, maps, refunds)
    model = train_model(data, out, until=until, labels=labels, reviews=reviews,
                        feedback_delay_days=delay_days, config=config, timezone=timezone, mapping=mapping,
                        device=device, precision=precision, progress=show_progress(quiet))
    click.echo(f"trained on {model.n_train_} transactions, {len(model.feature_names)} features"
               f"{' (with feedback)' if model.config.features.feedback else ''}"
               f"{f'; feedback head on {sum(model.head_.n_labels_)} dispositions' if model.has_head else ''}"
               f"; saved to {out}")


@finance.command()
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--data", required=True, type=click.Path(exists=True), help="Transactions (Parquet/CSV).")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="scores.parquet to write; its explanations go beside it (NAME.explanations.parquet), "
                   "both written in full before either replaces an older file.")
@click.option("--workspace", default=None, type=click.Path(file_okay=False),
              help="Write a run directory WS/runs/finance/<id>/ instead of --out.")
@click.option("--fdr", default=None, type=float, help="Alert at this false-discovery rate (e.g. 0.05).")
@click.option("--budget", default=None, type=int, help="Alert on the K highest scores.")
@click.option("--labels", default=None, type=click.Path(exists=True, dir_okay=False))
@click.option("--reviews", default=None, type=click.Path(exists=True, dir_okay=False))
@click.option("--engine", default="local", type=click.Choice(["local", "ray"]), show_default=True)
@click.option("--address", default=None, help="Ray cluster address (engine=ray).")
@click.option("--max-shap", default=None, type=int,
              help="SHAP reason codes for the top K alerts only; the rest get the detector's fast "
                   "error attribution (default: SHAP for every alert).")
@runtime_options
def score(model_dir, data, out, workspace, fdr, budget, labels, reviews, engine, address, max_shap,
          device, precision, quiet):
    """Score transactions: score, p_value, is_alert, rank and 3 reason codes per row."""
    from core.errors import DataValidationError  # lazy: the command loads torch/DuckDB only when it runs

    from .scoring import score_to_run, score_transactions  # lazy: the command loads torch/DuckDB only when it runs

    if (out is None) == (workspace is None):
        raise DataValidationError("give exactly one of --out scores.parquet or --workspace DIR")
    kwargs = dict(fdr=fdr, budget=budget, labels=labels, reviews=reviews, engine=engine, address=address,
                  max_shap=max_shap, device=device, precision=precision, progress=show_progress(quiet))
    with plain_warnings():
        if workspace:
            run_dir = score_to_run(workspace, model_dir, data, **kwargs)
            click.echo(f"wrote run {run_dir}")
            return
        from pathlib import Path

        explanations = Path(out).with_name(Path(out).stem + ".explanations.parquet")
        summary = score_transactions(model_dir, data, out, explanations, **kwargs)
    click.echo(json.dumps(summary, indent=2))


@finance.command()
@click.option("--scores", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--data", required=True, type=click.Path(exists=True), help="Transactions with their labels.")
@click.option("--k", default=100, show_default=True, help="Alerts reviewed per day.")
@click.option("--model", "model_dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="Read --data through this model's saved column mapping (as score did).")
@click.option("--schema-file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="TOML mapping of your columns and codings (as for train), instead of --model.")
@click.option("--map", "maps", multiple=True, metavar="ROLE=COLUMN",
              help="One mapping entry, as for train (wins over --schema-file), instead of --model.")
def evaluate(scores, data, k, model_dir, schema_file, maps):
    """AUROC, average precision, Card Precision@k per day, recall per scenario."""
    from core.errors import DataValidationError  # lazy: the command loads torch/DuckDB only when it runs

    from .evaluate import evaluate as evaluate_scores  # lazy: the command loads torch/DuckDB only when it runs
    from .features import saved_features  # lazy: the command loads torch/DuckDB only when it runs
    from .mapping import build  # lazy: the command loads torch/DuckDB only when it runs

    if model_dir and (schema_file or maps):
        raise DataValidationError("give the mapping either with --model or with --schema-file/--map, not both")
    if model_dir:
        saved = saved_features(model_dir)
        mapping, timezone = saved.columns, saved.timezone
    else:
        mapping, timezone = build(schema_file, maps), "UTC"
    click.echo(json.dumps(evaluate_scores(scores, data, k=k, mapping=mapping, timezone=timezone), indent=2))


@finance.command()
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--data", required=True, type=click.Path(exists=True), help="Transactions (history).")
@click.option("--ids", required=True, help="Comma-separated transaction ids.")
@click.option("--labels", default=None, type=click.Path(exists=True, dir_okay=False))
@click.option("--reviews", default=None, type=click.Path(exists=True, dir_okay=False))
def explain(model_dir, data, ids, labels, reviews):
    """Reason codes (SHAP, in plain words) for the given transactions."""
    from .explain import explain_transactions, format_reasons  # lazy: the command loads torch/DuckDB only when it runs

    reasons, _ = explain_transactions(model_dir, data, ids.split(","), labels=labels, reviews=reviews)
    click.echo(format_reasons(reasons))




@finance.command("export")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False))
@export_options
def export(model_dir, fmt, out, atol, rtol):
    """Export the detector's network to ONNX, checked against PyTorch first.

    \b
    The graph is the masked-reconstruction network (the detector's "network" component):
      input   numeric        float32 (B, n_features)  features standardised with the training
                                                      mean and scale (metadata unmask.preprocess)
      output  column_errors  float32 (B, n_features)  per-feature reconstruction error averaged
                                                      over the learned masks (unmask.columns order)
    B is any batch size. Computing the features, the KNN component, the feedback head and
    calibration stay in Python. ONNX Runtime and PyTorch must agree within
    atol + rtol * |torch| on sample batches of 1, 2 and 5 rows, else nothing is written;
    the result is stored in the file's metadata (unmask.parity).
    """
    from core.export import export_onnx  # lazy: the command loads torch/DuckDB only when it runs

    from .detector import FinanceModel  # lazy: the command loads torch/DuckDB only when it runs

    model = FinanceModel.load(model_dir)
    report = export_onnx(model.detector_, out, atol=atol, rtol=rtol,
                         metadata={"kind": "finance-network", "has_feedback_head": model.has_head})
    click.echo(f"wrote {out}; parity: {report.summary()}")
