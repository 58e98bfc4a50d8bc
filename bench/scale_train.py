"""torchrun target of bench.scale: train the finance network, print epoch time (rank 0).

    torchrun --standalone --nproc_per_node=2 -m bench.scale_train FEATURES MODEL_DIR EPOCHS
"""
from __future__ import annotations

import json
import os
import sys


def main(features: str, model_dir: str, epochs: int) -> None:
    import pyarrow.parquet as pq

    from core import TabularDetector
    from core.training import is_main_process, world

    from finance.detector import FinanceModel

    names = FinanceModel.load(model_dir).feature_names
    frame = pq.read_table(features, columns=names).to_pandas()
    threads = int(os.environ.get("UNMASK_NUM_THREADS", "1"))
    detector = TabularDetector(components=["network"], max_epochs=epochs, max_steps=10**9,
                               random_state=0, num_threads=threads).fit(frame)
    history = detector.history_
    if is_main_process():
        n_epochs = len(history["train_loss"])
        print(json.dumps({"world_size": world()[1], "rows": len(frame), "epochs": n_epochs,
                          "epoch_seconds": history["seconds"] / n_epochs,
                          "final_val_loss": history["val_loss"][-1]}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
