"""Counts volume reads per file, for tests that training reads each volume once."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import medical.io
import medical.training_cases
import medical.volumes

# every module through which training reads a volume (each imported ``load_volume`` itself)
READERS = (medical.io, medical.volumes, medical.training_cases)


def count_reads(monkeypatch) -> Counter:
    """Count ``load_volume`` calls per file (the reads of label maps included), wherever
    training calls it; ``monkeypatch`` undoes the patches after the test."""
    reads, real = Counter(), medical.io.load_volume

    def load_volume(path, *args, **kwargs):
        reads[Path(path)] += 1
        return real(path, *args, **kwargs)

    for module in READERS:
        monkeypatch.setattr(module, "load_volume", load_volume)
    return reads
