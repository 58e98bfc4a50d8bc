"""`unmask medical`: thin CLI over the medical Python API."""
from __future__ import annotations

import json
from dataclasses import replace

import click

from core.cli_options import (export_options, plain_warnings, resolve_run_dir, run_destination,
                              runtime_options, show_progress)
from core.errors import DataValidationError
from core.io import check_output, write_text_atomic
from core.text import counted

from .io import find_cases

PRESET_OPTION = click.option("--preset", type=click.Choice(["tiny", "small", "default"]),
                             default="default", show_default=True,
                             help="Network/training size (tiny: tests; small: demo).")


@click.group()
def medical():
    """CT: phantoms, masked-volume pretraining, segmentation and anomaly maps."""


@medical.command()
@click.option("--cases", "n_cases", type=int, required=True, help="Number of cases.")
@click.option("--out", type=click.Path(), required=True, help="Dataset root (MSD layout).")
@click.option("--lesions", is_flag=True, help="Put lesions in about half of the cases.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--shape", default="96,96,48", show_default=True, help="Voxels per axis.")
@click.option("--prefix", default="case", show_default=True,
              help="Case names: PREFIX_000, PREFIX_001, ... (give sets that meet, e.g. training "
                   "and calibration phantoms, their own).")
def simulate(n_cases, out, lesions, seed, shape, prefix):
    """Simulate abdominal CT phantoms into OUT (imagesTr/, labelsTr/, dataset.json)."""
    from .phantom import simulate_dataset  # lazy: loads torch/MONAI on use

    try:
        dims = tuple(int(s) for s in shape.split(","))
    except ValueError:
        raise DataValidationError(f"--shape {shape!r}: expected three integers like 96,96,48") from None
    simulate_dataset(out, n_cases, lesions=lesions, seed=seed, shape=dims, prefix=prefix)
    click.echo(f"wrote {counted(n_cases, 'case')} to {out}")


@medical.command()
@click.option("--data", type=click.Path(), required=True, help="Unlabelled (lesion-free) volumes.")
@click.option("--out", type=click.Path(), required=True, help="Model bundle directory.")
@PRESET_OPTION
@click.option("--epochs", type=int, default=None, help="Override the preset's epochs.")
@click.option("--seed", type=int, default=0, show_default=True)
@runtime_options
def pretrain(data, out, preset, epochs, seed, device, precision, quiet):
    """Masked-volume pretraining; the result is also the anomaly model."""
    from core.training import is_main_process  # lazy: loads torch on use

    from .presets import preset as get_preset  # lazy: loads torch/MONAI on use
    from .pretrain import pretrain as run_pretrain  # lazy: loads torch/MONAI on use

    check_output(out, [data])
    config, _ = get_preset(preset, seed)
    if epochs:
        config = replace(config, max_epochs=epochs)
    with plain_warnings(show=is_main_process()):   # cases left out: one line each
        scorer = run_pretrain(data, out, config, progress=show_progress(quiet), device=device,
                              precision=precision)
    click.echo(f"pretrained for {counted(len(scorer.history_.train_loss), 'epoch')} "
               f"(best validation loss {scorer.history_.best_val_loss:.4f}); saved {out}")


@medical.command()
@click.option("--data", type=click.Path(), required=True, help="Labelled dataset (MSD layout).")
@click.option("--out", type=click.Path(), required=True, help="Model directory.")
@click.option("--pretrained", type=click.Path(), default=None, help="Bundle from `pretrain`.")
@click.option("--labels", "n_labels", type=int, default=None,
              help="Use only the first K labelled cases.")
@PRESET_OPTION
@click.option("--epochs", type=int, default=None, help="Override the preset's epochs.")
@click.option("--calibration-data", type=click.Path(), default=None,
              help="Lesion-free cases to calibrate organ anomaly scoring on (default: those of "
                   "--data beyond the training cases and the cases --pretrained trained on). "
                   "Cases the segmenter or the anomaly model trained on are left out (one "
                   "warning line); refused if fewer than 2 remain.")
@click.option("--unlabelled", type=click.Path(exists=True), default=None,
              help="Unlabelled volumes for masked consistency: an EMA teacher labels their "
                   "crops, the segmenter must give its confident labels with patches hidden. "
                   "Cases trained, validated or calibrated on are left out (counted on output).")
@click.option("--seed", type=int, default=0, show_default=True)
@runtime_options
def train(data, out, pretrained, n_labels, preset, epochs, calibration_data, unlabelled, seed,
          device, precision, quiet):
    """Fine-tune (or train from scratch) the organ segmenter with Dice + CE."""
    from core.training import is_main_process  # lazy: loads torch on use

    from .presets import preset as get_preset  # lazy: loads torch/MONAI on use
    from .pretrain import healthy_cases  # lazy: loads torch/MONAI on use
    from .segment import train_segmenter  # lazy: loads torch/MONAI on use
    from .training_cases import unlabelled_summary  # lazy: loads torch on use

    check_output(out, [data, pretrained, calibration_data, unlabelled])
    _, config = get_preset(preset, seed)
    if epochs:
        config = replace(config, max_epochs=epochs)
    with plain_warnings(show=is_main_process()):   # cases left out: one line each
        calibration = (healthy_cases(calibration_data, "--calibration-data") if calibration_data
                       else None)
        segmenter = train_segmenter(data, out, pretrained, n_labels, config,
                                    progress=show_progress(quiet), calibration_cases=calibration,
                                    device=device, precision=precision,
                                    unlabelled_cases=find_cases(unlabelled) if unlabelled else None)
    if unlabelled:
        training = segmenter.provenance_["training"]
        click.echo(unlabelled_summary(len(training["unlabelled_cases"]),
                                      training["unlabelled_left_out"]))
    click.echo(f"trained for {counted(len(segmenter.history_.train_loss), 'epoch')} "
               f"(best validation loss {segmenter.history_.best_val_loss:.4f}); saved {out}")


@medical.command()
@click.option("--model", "model_dir", type=click.Path(), required=True, help="From `train`.")
@click.option("--images", type=click.Path(), required=True,
              help="NIfTI file, directory, MSD root or DICOM series directory.")
@run_destination
@click.option("--anomaly-model", type=click.Path(), default=None,
              help="A `pretrain` bundle (overrides the one inside --model).")
@click.option("--fdr", type=float, default=0.1, show_default=True, help="Alert FDR level.")
@click.option("--dicom-seg", is_flag=True,
              help="Also write each case's segmentation as a DICOM SEG and its anomaly map as a "
                   "DICOM Parametric Map, referencing the input series (DICOM input only).")
@runtime_options
def infer(model_dir, images, out, workspace, anomaly_model, fdr, dicom_seg, device, precision, quiet):
    """Segment, map anomalies and score each case; write a run directory."""
    from .infer import infer as run_infer  # lazy: loads torch/MONAI on use

    out = resolve_run_dir(out, workspace, "medical")
    with plain_warnings():                # ours as one plain line each; others as usual
        run_dir = run_infer(model_dir, images, out, anomaly_model=anomaly_model, fdr=fdr,
                            progress=show_progress(quiet), device=device, precision=precision,
                            dicom_seg=dicom_seg)
    click.echo(f"wrote {run_dir}")


@medical.command()
@click.option("--pred", type=click.Path(), required=True, help="Run directory from `infer`.")
@click.option("--data", type=click.Path(), required=True, help="Dataset with the truth.")
@click.option("--out", type=click.Path(), default=None, help="Also write the report (JSON).")
def evaluate(pred, data, out):
    """Dice per organ; case AUROC/AP, voxel AP and best Dice of the anomaly maps."""
    from .evaluate import evaluate as run_evaluate  # lazy: loads torch/MONAI on use

    if out:
        check_output(out, [pred, data])
    report = run_evaluate(pred, data)
    summary = {k: v for k, v in report.items() if k != "per_case"}
    text = json.dumps(summary, indent=2)
    click.echo(text)
    if out:
        write_text_atomic(out, json.dumps(report, indent=2))


@medical.command("batch-score")
@click.option("--model", "model_dir", type=click.Path(exists=True), required=True, help="From `train`.")
@click.option("--images", type=click.Path(exists=True), required=True,
              help="NIfTI file, directory, MSD root or DICOM series directory.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="cases.parquet to write.")
@click.option("--anomaly-model", type=click.Path(exists=True), default=None)
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--address", default=None, help="Ray cluster address (engine=ray; 'auto' joins one).")
@click.option("--fdr", type=float, default=0.1, show_default=True, help="Alert FDR level.")
def batch_score(model_dir, images, out, anomaly_model, engine, address, fdr):
    """Score an archive into one per-case table, locally or on Ray (no maps, no SHAP)."""
    from .batch import batch_score as run  # lazy: loads torch/MONAI on use

    check_output(out, [model_dir, images, anomaly_model])
    with plain_warnings():                # ours as one plain line each; others as usual
        summary = run(model_dir, images, out, anomaly_model=anomaly_model, engine=engine,
                      address=address, fdr=fdr)
    click.echo(json.dumps(summary))




@medical.command("export")
@click.option("--model", "model_dir", type=click.Path(exists=True), required=True,
              help="From `train` (segmenter/ + anomaly/) or a `pretrain` bundle.")
@click.option("--network", type=click.Choice(["segmenter", "anomaly"]), default=None,
              help="Which UNet  [default: the segmenter when the model has one, else anomaly]")
@export_options
def export(model_dir, network, fmt, out, atol, rtol):
    """Export one of the model's 3-D UNets to ONNX, checked against PyTorch first.

    \b
    input   input   float32 (B, 2, X, Y, Z)   channel 0: CT on the model grid, HU window
                                              mapped to [0, 1], hidden voxels 0; channel 1:
                                              hidden-voxel indicator (all 0 for the segmenter)
    output  logits  float32 (B, L + 1, X, Y, Z)  segmenter: class logits (0 = background)
    output  output  float32 (B, 2, X, Y, Z)   anomaly network: correction to the context
                                              baseline, and log variance (B, 18, ...: 16
                                              embedding channels after them when pretrained
                                              with pretext inpaint_invariant)
    B is any batch size; X, Y, Z any multiples of the product of the UNet's strides
    (inference feeds windows of the bundle's roi_size). Resampling, windowing, sliding
    windows, the masking schedule and scoring stay in Python; the file's doc_string says
    it exactly. ONNX Runtime and PyTorch must agree within atol + rtol * |torch| on
    batches of 1, 2 and 5 windows and one larger window, else nothing is written; the
    result is stored in the file's metadata (unmask.parity).
    """
    from core.export import export_onnx  # lazy: imports torch

    from .onnx_export import unet_spec  # lazy: loads torch/MONAI on use

    spec = unet_spec(model_dir, network)
    report = export_onnx(spec, out, atol=atol, rtol=rtol)
    click.echo(f"wrote {out} ({spec.metadata['kind']}); parity: {report.summary()}")
