"""``unmask finance score``: features -> per-row scores -> global calibration -> reasons.

Three stages, each with bounded memory:

1. :func:`finance.features.featurise` writes point-in-time features to a temporary Parquet
   file (DuckDB, out of core);
2. the per-row model step is the pure batch function returned by
   :func:`load_batch_scorer` (``pyarrow.Table -> pyarrow.Table``), run over that file by
   :func:`core.scale.map_parquet` locally (streamed) or on Ray;
3. a global step over the score column alone: conformal p-values, rank and alerts
   (Benjamini-Hochberg at ``fdr`` or the top ``budget``); SHAP reason codes for the alerts;
   DuckDB joins and sorts by rank and writes ``scores.parquet`` atomically.

Scores and explanations go out together: both files are written in full before either is
renamed into place, so a failure leaves the old pair. Inside a run directory
(:func:`score_to_run`) the pair is published by the run's one rename; with plain paths the
two renames follow each other directly (explanations first).
"""
from __future__ import annotations

import functools
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from core.drift import calibration_reference
from core.errors import DataValidationError, UnmaskWarning
from core.io import atomic_path, check_output, write_parquet_atomic
from core.metrics import auprc, auroc
from core.runs import create_run, new_run_id
from core.runtime import choose_device, configure_threads, progress_bar
from core.scale import map_parquet

from .detector import FinanceModel
from .drift import DriftCheck
from .features import ID_COLUMNS, PASS_THROUGH, featurise
from .feedback import load_confirmations
from .reasons import top_reasons, usual_values
from .schema import connect
from .sql import ident, literal

REASON_PARTS = ("feature", "shap", "value", "usual", "text")
HISTORY_COLUMNS = ("ctx_card_all_n_30d", "ctx_card_age_days")   # earlier transactions in 30 days; days since first seen


def load_batch_scorer(model_dir, device="cpu", precision: str = "fp32"):
    """Load a model once (its network on ``device``); return ``score_batch(table) -> table``
    (ids, ``_row``, ``score``, ``warming_up``: fewer than the model's ``min_history``
    earlier transactions of the card in 30 days, or the card first seen in the file fewer
    than ``min_history_days`` before)."""
    import pyarrow as pa

    configure_threads()
    model = FinanceModel.load(model_dir, device, precision)

    def score_batch(table: "pa.Table") -> "pa.Table":
        frame = table.select(model.feature_names).to_pandas()
        keep = [c for c in ID_COLUMNS + PASS_THROUGH + ("_row",) if c in table.column_names]
        count, age = (table.column(c).to_numpy(zero_copy_only=False) for c in HISTORY_COLUMNS)
        warming = (count < model.config.min_history) | (age < model.config.min_history_days)
        return (table.select(keep).append_column("score", pa.array(model.score(frame), pa.float64()))
                .append_column("warming_up", pa.array(warming)))

    return score_batch


def _explain_rows(model: FinanceModel, features_path, rows: np.ndarray, n_shap: int | None = None):
    """Attributions + reason codes for the feature rows with ``_row`` in ``rows`` (in order).

    The first ``n_shap`` rows (default: all) get SHAP values; the rest the detector's fast
    additive error attribution (:meth:`FinanceModel.error_attribution`, same base value),
    or SHAP too when the model has a feedback head.
    """
    import pyarrow.compute as pc
    import pyarrow.dataset as pads


    dataset = pads.dataset(str(features_path), format="parquet")
    frame = dataset.to_table(filter=pc.field("_row").isin(rows.tolist())).to_pandas()
    frame = frame.set_index("_row").loc[rows].reset_index()
    n_shap = len(frame) if n_shap is None or model.has_head else min(int(n_shap), len(frame))
    parts = [model.explain(frame.iloc[:n_shap])] if n_shap else []
    if n_shap < len(frame):
        parts.append(model.error_attribution(frame.iloc[n_shap:]))
    values = np.concatenate([p.values for p in parts]) if parts else np.zeros((0, len(model.feature_names)))
    base = np.concatenate([p.base_values for p in parts]) if parts else np.zeros(0)
    delay = model.config.features.feedback_delay_days
    reasons = top_reasons(values, model.feature_names, frame, delay)
    reasons.insert(0, "_row", frame["_row"].to_numpy())
    value, usual = usual_values(model.feature_names, frame, delay)
    d = len(model.feature_names)
    long = pd.DataFrame({"transaction_id": np.repeat(frame["transaction_id"].to_numpy(), d),
                         "feature": np.tile(model.feature_names, len(frame)),
                         "shap_value": values.ravel(), "value": value.ravel(),
                         "usual_value": usual.ravel()})
    return reasons, long, float(np.mean(base)) if len(frame) else model.expected_score_


def _empty_explanations() -> pd.DataFrame:
    return pd.DataFrame({"transaction_id": pd.Series(dtype=str), "feature": pd.Series(dtype=str),
                         "shap_value": pd.Series(dtype="float64"), "value": pd.Series(dtype="float64"),
                         "usual_value": pd.Series(dtype="float64")})


def _empty_reasons() -> pd.DataFrame:
    cols = {"_row": pd.Series(dtype="int64")}
    for i in (1, 2, 3):
        for part in REASON_PARTS:
            cols[f"reason_{i}_{part}"] = pd.Series(dtype=object if part in ("feature", "text") else "float64")
    return pd.DataFrame(cols)


def _with_progress(make_scorer, bar):
    """A scorer factory whose scorer advances ``bar`` by the rows of every batch."""

    def make():
        scorer = make_scorer()

        def score_batch(table):
            result = scorer(table)
            bar.update(table.num_rows)
            return result

        return score_batch

    return make


def map_features(features_path, out_dir, model_dir, engine: str = "local", address=None,
                 batch_size: int = 65_536, device="cpu", precision: str = "fp32",
                 progress: bool | None = None) -> Path:
    """Stage 2: the batch scorer over the features file (core.scale), its network on
    ``device``; with the local engine a bar over rows (``progress``: None = terminal only)."""
    import pyarrow.parquet as pq


    # Read only what the scorer needs (not the ctx_* columns): less I/O and memory.
    present = pq.read_schema(features_path).names
    wanted = set(ID_COLUMNS + PASS_THROUGH + ("_row",) + HISTORY_COLUMNS)
    columns = [c for c in present if c in wanted or not c.startswith("ctx_")]
    make_scorer = functools.partial(load_batch_scorer, str(model_dir), device, precision)
    if engine != "local":  # Ray workers report their own progress
        return map_parquet(features_path, out_dir, make_scorer, engine=engine,
                           batch_size=batch_size, address=address, columns=columns)
    total = pq.ParquetFile(features_path).metadata.num_rows
    with progress_bar(desc="score", total=total, unit="row", unit_scale=True, show=progress) as bar:
        return map_parquet(features_path, out_dir, _with_progress(make_scorer, bar),
                           engine=engine, batch_size=batch_size, address=address, columns=columns)


def score_transactions(model_dir, data, out, explanations_out=None, fdr: float | None = None,
                       budget: int | None = None, labels=None, reviews=None, engine: str = "local",
                       address=None, max_explained: int = 10_000, batch_size: int = 65_536,
                       max_shap: int | None = None, device="auto", precision: str = "fp32",
                       progress: bool | None = None) -> dict:
    """Score every transaction in ``data``; write ``out`` (scores.parquet) sorted by rank.

    Args:
        model_dir: finance model directory.
        data: transactions (Parquet/CSV).
        out: scores Parquet file (columns in docs/runs.md), written atomically.
        explanations_out: long-format SHAP table for the alerts (optional); written in full
            before ``out`` is renamed into place (module docstring).
        fdr: alert at this Benjamini-Hochberg false-discovery rate, or
        budget: alert on the ``budget`` highest scores; neither: the model's threshold.
        labels, reviews: confirmed dispositions for the feedback features (models trained
            with feedback; without them no confirmation is known).
        engine, address: ``core.scale`` engine (``local`` or ``ray``) and Ray address.
        max_explained: reason codes for at most this many top-ranked alerts.
        max_shap: of those, SHAP values for the ``max_shap`` highest-ranked (what an analyst
            opens first); the rest use the detector's fast error attribution (models with a
            feedback head always use SHAP). Default: SHAP for all.
        device, precision: where the detector's network scores (auto, cpu, cuda, cuda:N)
            and in what precision (``"fp32"``, or ``"bf16"``: CUDA autocast).
        progress: a bar over the scored rows on stderr (None: only on a terminal;
            False: never).

    Returns:
        Summary dict (``n_transactions``, ``n_alerts``, ``n_warming_up`` (cards with too
        little history: marked ``warming_up``, never alerted), ``n_explained``, ``expected_score``,
        ``fdr``/``budget``, ``auroc``/``average_precision`` when labels exist, and
        ``warning`` when the file is unlike the training data, also raised as an
        :class:`core.errors.UnmaskWarning`).
    """
    import pyarrow.dataset as pads


    if fdr is not None and budget is not None:
        raise DataValidationError("give either --fdr or --budget, not both")
    guarded = [data, model_dir, labels, reviews]
    check_output(out, guarded)  # before the scoring, not after it
    if explanations_out is not None:
        check_output(explanations_out, guarded)
    device = str(choose_device(device))  # "auto" resolved once, for every stage alike
    model = FinanceModel.load(model_dir, device, precision)
    confirmations = (load_confirmations(labels, reviews, model.config.features.timezone)
                     if model.config.features.feedback else None)
    with tempfile.TemporaryDirectory(prefix="unmask-score-") as work:
        work = Path(work)
        featurise(data, work / "features.parquet", cfg=model.config.features, labels=confirmations)
        map_features(work / "features.parquet", work / "scored", model_dir, engine, address, batch_size,
                     device, precision, progress)
        dataset = pads.dataset(str(work / "scored"), format="parquet")
        has_truth = "is_fraud" in dataset.schema.names
        scored = dataset.to_table(columns=["_row", "score", "warming_up"] + (["is_fraud"] if has_truth else []))
        row, score = scored["_row"].to_numpy(), scored["score"].to_numpy()
        warming = scored["warming_up"].to_numpy(zero_copy_only=False)
        quality = (_quality(scored["is_fraud"].to_pandas().to_numpy(dtype=np.float64, na_value=np.nan), score)
                   if has_truth else {})
        del scored, dataset
        calibration = model.calibration
        warning = _drift_warning(model, work / "features.parquet", float(np.mean(score > calibration.threshold_)))
        p_values = calibration.p_values(score)
        alerts = np.zeros(score.size, bool)   # a card still warming up is never alerted
        alerts[~warming] = calibration.alerts(score[~warming], fdr=fdr, budget=budget)
        order = np.lexsort((row, -score))                    # rank 1 = highest score
        rank = np.empty(row.size, np.int64)
        rank[order] = np.arange(1, row.size + 1)
        explain = order[alerts[order]][:max_explained]
        reasons, long, expected = (_explain_rows(model, work / "features.parquet", row[explain], max_shap)
                                   if explain.size else (_empty_reasons(), None, model.expected_score_))
        summary = {"n_transactions": int(score.size), "n_alerts": int(alerts.sum()),
                   "n_warming_up": int(warming.sum()),
                   "n_explained": int(explain.size), "expected_score": expected,
                   "n_shap_explained": int(explain.size if max_shap is None or model.has_head
                                           else min(max_shap, explain.size))}
        summary.update({"fdr": fdr} if fdr is not None else {"budget": budget} if budget is not None else
                       {"threshold": float(calibration.threshold_)})
        summary.update(quality, calibration_reference=calibration_reference(calibration))
        if warning:
            summary["warning"] = f"{data}: {warning}"
            warnings.warn(summary["warning"], UnmaskWarning, stacklevel=2)
        # The per-row global columns go to disk, so the final join + sort runs inside DuckDB's
        # memory limit (spilling) instead of beside ~25 bytes/row of numpy arrays.
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"_row": row, "p_value": p_values, "is_alert": alerts, "rank": rank}),
                       work / "global.parquet")
        del row, p_values, rank, score, alerts, order, warming
        con = connect(temp_dir=work / "spill")
        try:
            con.execute(f"CREATE VIEW global_step AS SELECT * FROM read_parquet({literal(work / 'global.parquet')})")
            con.register("reasons", reasons)
            scored_files = literal((work / "scored").as_posix() + "/*.parquet")
            con.execute(f"CREATE VIEW scored AS SELECT * FROM read_parquet({scored_files})")
            cols = [c for c in con.execute("DESCRIBE scored").df()["column_name"] if c not in ("_row",)]
            reason_cols = [c for c in reasons.columns if c != "_row"]
            id_cols = [f"s.{ident(c)}" for c in ID_COLUMNS]
            passed = [f"s.{ident(c)}" for c in cols if c in PASS_THROUGH]
            select = ", ".join(id_cols + ["s.score", "g.p_value", "g.is_alert", "s.warming_up", "g.rank"]
                               + [f"r.{ident(c)}" for c in reason_cols] + passed)
            with atomic_path(out, inputs=guarded) as tmp:
                con.execute(f"COPY (SELECT {select} FROM scored s JOIN global_step g USING (_row) LEFT JOIN reasons r "
                            f"USING (_row) ORDER BY g.rank) TO {literal(tmp)} (FORMAT PARQUET)")
                if explanations_out is not None:  # renamed before the scores: the pair goes out together
                    write_parquet_atomic(_empty_explanations() if long is None else long, explanations_out,
                                         inputs=guarded)
        finally:
            con.close()
    return summary


def _drift_warning(model: FinanceModel, features_path, share_above: float) -> str | None:
    """One line when the scored file is unlike the training data (:mod:`finance.drift`)."""
    import pyarrow.dataset as pads

    if getattr(model, "reference_", None) is None or np.isnan(share_above):
        return None
    check = DriftCheck(model.reference_)
    for batch in pads.dataset(str(features_path), format="parquet").to_batches(columns=check.columns()):
        check.add(batch.to_pandas())
    return check.warning(share_above)


def _quality(truth, score) -> dict:

    known = ~np.isnan(truth)   # an empty is_fraud cell is an unknown label, not a legitimate one
    truth, score = truth[known].astype(int), score[known]
    if truth.size == 0 or truth.min() == truth.max():
        return {}
    return {"auroc": float(auroc(truth, score)), "average_precision": float(auprc(truth, score))}


def score_to_run(workspace, model_dir, data, fdr=None, budget=None, labels=None, reviews=None,
                 engine: str = "local", address=None, run_id: str | None = None,
                 max_shap: int | None = None, device="auto", precision: str = "fp32",
                 progress: bool | None = None) -> Path:
    """Score into a new run directory ``WS/runs/finance/<run_id>/`` (docs/runs.md)."""

    run_dir = Path(workspace) / "runs" / "finance" / (run_id or new_run_id())
    params = {"fdr": fdr, "budget": budget, "labels": str(labels) if labels else None,
              "reviews": str(reviews) if reviews else None, "engine": engine, "max_shap": max_shap}
    with create_run(run_dir, "finance", "score", params=params, model=str(Path(model_dir).resolve()),
                    inputs=[str(Path(data).resolve())]) as run:
        summary = score_transactions(model_dir, data, run.path("scores", "scores.parquet"),
                                     run.path("explanations", "explanations.parquet"), fdr=fdr,
                                     budget=budget, labels=labels, reviews=reviews, engine=engine,
                                     address=address, max_shap=max_shap, device=device,
                                     precision=precision, progress=progress)
        run.summarize(**summary)
    return run_dir
