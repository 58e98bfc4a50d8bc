"""Data and settings shared by the core tests (imported by name: ``from tabular_data import``;
a module called ``conftest`` would be ambiguous between the test folders)."""
import numpy as np
import pandas as pd

# A tiny detector configuration: seconds to fit, still both components.
TINY = dict(n_reference=256, n_reference_masks=8, n_learned_masks=4, hidden=32, latent=8,
            max_epochs=40, max_steps=300, batch_size=128)


def correlated_rows(rng, n, d=8):
    """Rows on a 3-D linear manifold plus small noise (normal data)."""
    basis = np.random.default_rng(123).normal(size=(3, d))
    return rng.normal(size=(n, 3)) @ basis + 0.1 * rng.normal(size=(n, d))


def mixed_frame(rng, n):
    """DataFrame with numeric and categorical columns; ``kind`` depends on ``amount``."""
    amount = rng.gamma(2.0, 10.0, size=n)
    kind = np.where(amount > 20, "large", "small")
    channel = rng.choice(["web", "shop", "phone"], size=n)
    return pd.DataFrame({"amount": amount, "hour": rng.integers(0, 24, size=n),
                         "kind": kind, "channel": pd.Categorical(channel),
                         "flag": rng.random(n) < 0.3})
