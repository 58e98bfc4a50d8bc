"""`unmask driving`: thin CLI over the driving Python API."""
import json
from dataclasses import replace

import click

from core.cli_options import (export_options, plain_warnings, resolve_run_dir, run_destination,
                              runtime_options, show_progress)
from core.export import export_onnx
from core.io import check_output
from core.text import counted
from core.training import is_main_process

from .batch import batch_score as run_batch_score
from .demo import sim_config
from .evaluate import evaluate_run
from .guard import FINE_TUNE
from .importers.occ3d import MASKS, SPLITS, import_occ3d
from .onnx_export import occlusion_spec
from .model.predictor import DEFAULT_LR, OcclusionPredictor
from .rerun_export import export_rerun as write_rerun
from .schema import list_logs, read_log
from .scoring.run import score_logs
from .sim.simulator import simulate_logs


@click.group()
def driving():
    """Drive logs: simulate, train the occlusion predictor, score surprise, evaluate, replay."""


@driving.command()
@click.option("--logs", "n_logs", type=click.IntRange(min=1), required=True, help="Number of logs.")
@click.option("--frames", type=click.IntRange(min=2), required=True, help="Frames per log.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output directory.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--grid", type=click.Choice(["128", "64"]), default="128", show_default=True,
              help="Grid size (cells per side, 0.5 m each).")
@click.option("--world", type=click.Choice(["town", "highway"]), default="town", show_default=True,
              help="town: two-lane streets, parked cars, pedestrians, 10 Hz; highway: lanes each "
                   "way, 20-35 m/s car-following traffic, stalls, debris, crashes, hard braking, 5 Hz.")
@click.option("--anomaly-interval", type=click.FloatRange(min=0), default=20.0, show_default=True,
              help="Mean seconds between injected anomaly events; 0 simulates normal drives "
                   "(what the occlusion predictor trains best on).")
def simulate(n_logs, frames, out, seed, grid, world, anomaly_interval):
    """Simulate drive logs (one Parquet file per log) with injected anomalies.

    The folder is published whole, as `import` does: a rerun replaces an earlier folder of
    simulated logs (no stale log of another world or size stays in it for `train` to mix
    in), and a folder unmask did not write is refused.
    """
    config = sim_config("small" if grid == "128" else "tiny", world)
    paths = simulate_logs(out, n_logs, frames, seed=seed,
                          config=replace(config, anomaly_interval_s=anomaly_interval))
    click.echo(f"wrote {counted(len(paths), 'log')} to {out}")


@driving.command()
@click.option("--logs", "--log-dir", "logs", type=click.Path(exists=True), required=True,
              help="Directory of drive logs (--log-dir under torchrun, whose parser takes "
                   "--logs for its own --logs-specs).")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Model directory.")
@click.option("--epochs", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--steps-per-epoch", type=click.IntRange(min=1), default=None)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_LR,
              show_default=True, help="Learning rate.")
@click.option("--init", "init", type=click.Path(exists=True, file_okay=False), default=None,
              help="Fine-tune: go on training this model's network (its settings, its weights) "
                   "on --logs, e.g. normal logs of a road the input guard called unlike its "
                   f"training logs; {FINE_TUNE['epochs']} epochs at --lr {FINE_TUNE['lr']:g} were "
                   "measured (README).")
@click.option("--seed", type=int, default=0, show_default=True)
@runtime_options
def train(logs, out, epochs, steps_per_epoch, lr, init, seed, device, precision, quiet):
    """Train the self-supervised occlusion predictor (never reads simulator truth)."""
    check_output(out, [logs, init])
    loaded = [read_log(p) for p in list_logs(logs)]
    # a fine-tune keeps the source's recipe (history, memory, widths, calibration ...)
    recipe = OcclusionPredictor.load(init).get_params() if init else {}
    settings = {**recipe, "epochs": epochs,
                "max_steps_per_epoch": steps_per_epoch, "lr": lr, "random_state": seed,
                "device": device, "precision": precision, "progress": show_progress(quiet)}
    predictor = OcclusionPredictor(**settings)
    # e.g. one training log: the threshold read in-sample (one line, from rank 0 only)
    with plain_warnings(show=is_main_process()):
        predictor.fit(loaded, init=init)   # the bundle records where its weights came from
    if not is_main_process():  # under torchrun, rank 0 writes the model and reports
        return
    predictor.save(out)
    click.echo(f"saved model to {out} (best validation loss {predictor.history_.best_val_loss:.4f})")


@driving.command()
@click.option("--model", type=click.Path(exists=True, file_okay=False), required=True)
@click.option("--logs", type=click.Path(exists=True), required=True, help="Log directory or file.")
@run_destination
@click.option("--fdr", type=float, default=None, help="Alert at this false-discovery rate.")
@click.option("--top-frames", type=click.IntRange(min=0), default=5, show_default=True,
              help="Frames explained with region SHAP.")
@runtime_options
def score(model, logs, out, workspace, fdr, top_frames, device, precision, quiet):
    """Per-frame surprise scores and per-cell predictions for replay."""
    out = resolve_run_dir(out, workspace, "driving")
    with plain_warnings():    # a log unlike the training logs: one `warning:` line
        run_dir = score_logs(model, logs, out, fdr=fdr, top_frames=top_frames, device=device,
                             precision=precision, progress=show_progress(quiet))
    click.echo(f"wrote run {run_dir}")


@driving.command()
@click.option("--pred", type=click.Path(exists=True, file_okay=False), required=True,
              help="Run directory written by `score`.")
@click.option("--logs", type=click.Path(exists=True), required=True, help="Logs with truth.")
def evaluate(pred, logs):
    """Hidden-cell and frame-anomaly metrics against simulator truth (JSON)."""
    click.echo(json.dumps(evaluate_run(pred, logs), indent=2))


@driving.command("import")
@click.option("--format", "fmt", type=click.Choice(["occ3d"]), required=True,
              help="The layout of SRC.")
@click.argument("src", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Folder of drive logs to write (one per scene).")
@click.option("--mask", type=click.Choice(sorted(MASKS)), default="camera", show_default=True,
              help="Which visibility mask makes a cell observed.")
@click.option("--voxel-size", type=click.FloatRange(min=0, min_open=True), default=0.4,
              show_default=True, help="Voxel edge in metres (the logs' cell size).")
@click.option("--split", type=click.Choice(list(SPLITS)), default="all", show_default=True,
              help="Scenes of annotations.json's train_split / val_split, or all.")
def import_logs(fmt, src, out, mask, voxel_size, split):
    """Write drive logs from a public occupancy dataset's files.

    \b
    occ3d: an Occ3D-nuScenes split folder SRC:
      SRC/annotations.json   scene_infos: scene -> frame token -> timestamp (us),
                             ego_pose (translation, [w,x,y,z] rotation), gt_path
      SRC/gts/<scene>/<frame_token>/labels.npz
                             semantics (X, Y, Z) uint8, 0-16 nuScenes-lidarseg, 17 free;
                             mask_camera, mask_lidar (1 = observed)
    One scene -> one log <scene>.parquet. A cell takes its voxel column's observed
    classes: any object (lowest), else the lowest occupied voxel; it is visible when an
    occupied voxel of the column was observed. Classes:
      car bus truck trailer construction_vehicle bicycle motorcycle -> vehicle
      pedestrian -> pedestrian;  barrier traffic_cone others -> static_obstacle
      driveable_surface -> road;  sidewalk -> sidewalk
      terrain vegetation manmade other_flat -> off_road;  free -> (air)
    Occ3D has no lane markings: the logs list the classes they have, and scoring never
    predicts lane_marking in them. Ego pose and yaw from ego_pose, speed from the poses,
    the rate from the timestamps (2 Hz keyframes). A missing file, a wrong shape or an
    unknown class id is refused in one line naming the file; nothing is written then.
    """
    paths = import_occ3d(src, out, mask=mask, voxel_m=voxel_size, split=split)
    click.echo(f"wrote {counted(len(paths), 'log')} to {out}")


@driving.command("export-rerun")
@click.option("--pred", type=click.Path(exists=True, file_okay=False), required=True)
@click.option("--log", "log_file", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="FILE.rrd")
def export_rerun(pred, log_file, out):
    """Write a rerun recording (.rrd) of a scored log."""
    check_output(out, [pred, log_file])
    click.echo(f"wrote {write_rerun(pred, log_file, out)}")


@driving.command("batch-score")
@click.option("--model", type=click.Path(exists=True, file_okay=False), required=True)
@click.option("--logs", "--log-dir", "logs", type=click.Path(exists=True), required=True,
              help="Log directory or file.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="frames.parquet to write.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--address", default=None, help="Ray cluster address (engine=ray; 'auto' joins one).")
@click.option("--fdr", type=float, default=None, help="Alert at this false-discovery rate.")
def batch_score(model, logs, out, engine, address, fdr):
    """Score a fleet's logs into one per-frame table, locally or on Ray (no replay files)."""
    check_output(out, [model, logs])
    with plain_warnings():    # a log unlike the training logs: one `warning:` line
        summary = run_batch_score(model, logs, out, engine=engine, address=address, fdr=fdr)
    click.echo(json.dumps(summary))




@driving.command("export")
@click.option("--model", type=click.Path(exists=True, file_okay=False), required=True)
@export_options
def export(model, fmt, out, atol, rtol):
    """Export the occlusion network (with its softmax) to ONNX, checked against PyTorch first.

    \b
    input   grids          uint8   (B, F, H, W)  the stacked frames: current grid, earlier
                                                 grids warped into its ego frame (and the
                                                 layout memory); 255 = not observed
    input   speed          float32 (B,)          ego speed, m/s
    output  probabilities  float32 (B, C, H, W)  class probabilities per cell
    B is any batch size; F, H, W and C are the bundle's. Stacking the frames, the layout
    fallback, decisions and surprise scores stay in Python; the file's doc_string says it
    exactly. ONNX Runtime and PyTorch must agree within atol + rtol * |torch| on batches
    of 1, 2 and 5 frames, else nothing is written; the result is stored in the file's
    metadata (unmask.parity).
    """
    report = export_onnx(occlusion_spec(model), out, atol=atol, rtol=rtol)
    click.echo(f"wrote {out}; parity: {report.summary()}")
