"""``--out`` never overwrites an input or a folder unmask did not write, for every vertical
command (through the ``unmask`` CLI, on tiny real inputs; refused before any work)."""
import numpy as np
import pytest

from core.cli import main


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny transactions file, drive-log folder and CT dataset, and an (empty) model folder."""
    from driving.schema import DriveLog, LogMeta, write_log
    from finance.simulator import SimulatorConfig, simulate_to_parquet
    from medical.phantom import simulate_dataset

    root = tmp_path_factory.mktemp("inputs")
    simulate_to_parquet(root / "finance" / "tx.parquet",
                        SimulatorConfig(n_customers=10, n_terminals=20, n_days=3, seed=0))
    meta = LogMeta(grid_shape=(8, 6), ego_cell=(5, 3))
    semantic = np.ones((3, 8, 6), np.uint8)
    write_log(DriveLog(log_id="tiny", meta=meta, frame=np.arange(3), timestamp=np.arange(3) * 0.1,
                       ego_x=np.arange(3.0), ego_y=np.zeros(3), ego_yaw=np.zeros(3),
                       ego_speed=np.full(3, 10.0), semantic=semantic, visible=np.ones((3, 8, 6), bool)),
              root / "logs" / "tiny.parquet")
    simulate_dataset(root / "ct", 1, shape=(32, 32, 16))
    (root / "model").mkdir()
    (root / "foreign").mkdir()
    (root / "foreign" / "notes.txt").write_text("the user's")
    return root


def _snapshot(root):
    return sorted((str(p.relative_to(root)), p.read_bytes() if p.is_file() else None)
                  for p in root.rglob("*"))


# (command line with {root}, what the one line must say)
CASES = [
    ("finance score --model {root}/model --data {root}/finance/tx.parquet --out {root}/finance/tx.parquet",
     "output {root}/finance/tx.parquet is the input {root}/finance/tx.parquet"),
    ("finance score --model {root}/model --data {root}/finance/tx.parquet --out {root}/model/scores.parquet",
     "output {root}/model/scores.parquet is inside the input {root}/model"),
    ("finance train --data {root}/finance/tx.parquet --out {root}/finance",
     "output {root}/finance contains the input {root}/finance/tx.parquet"),
    ("finance train --data {root}/finance/tx.parquet --out {root}/foreign",
     "{root}/foreign: a folder unmask did not write"),
    ("driving score --model {root}/model --logs {root}/logs --out {root}/logs",
     "output {root}/logs is the input {root}/logs"),
    ("driving score --model {root}/model --logs {root}/logs --out {root}/logs/run",
     "output {root}/logs/run is inside the input {root}/logs"),
    ("driving score --model {root}/model --logs {root}/logs --out {root}/model",
     "output {root}/model is the input {root}/model"),
    ("driving train --logs {root}/logs --out {root}/logs/model",
     "output {root}/logs/model is inside the input {root}/logs"),
    ("driving batch-score --model {root}/model --logs {root}/logs/tiny.parquet --out {root}/logs/tiny.parquet",
     "output {root}/logs/tiny.parquet is the input {root}/logs/tiny.parquet"),
    ("medical infer --model {root}/model --images {root}/ct --out {root}/ct",
     "output {root}/ct is the input {root}/ct"),
    ("medical infer --model {root}/model --images {root}/ct/imagesTr --out {root}/ct/imagesTr/run",
     "output {root}/ct/imagesTr/run is inside the input {root}/ct/imagesTr"),
    ("medical infer --model {root}/model --images {root}/ct --out {root}/foreign",
     "{root}/foreign: a folder unmask did not write"),
    ("medical pretrain --data {root}/ct --out {root}/ct",
     "output {root}/ct is the input {root}/ct"),
    ("medical train --data {root}/ct --out {root}/ct/model",
     "output {root}/ct/model is inside the input {root}/ct"),
]


@pytest.mark.parametrize("command, says", CASES, ids=[c.split(" --")[0] + f" #{i}" for i, (c, _) in
                                                      enumerate(CASES)])
def test_out_is_refused_and_inputs_untouched(inputs, capsys, command, says):
    before = _snapshot(inputs)
    with pytest.raises(SystemExit) as exit_info:
        main(command.format(root=inputs).split())
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"Error: {says.format(root=inputs)}") and "\n" not in err
    assert "choose another --out" in err
    assert _snapshot(inputs) == before
