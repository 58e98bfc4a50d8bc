"""A disk-cacheable stand-in for one of shap's numba kernels (see ``core.explain``).

shap's ``_build_fixed_single_output`` takes the link function as an argument; numba cannot
reuse a cached compilation of such a function, so every new process compiled it again
(seconds, more on a busy machine). For the identity link without linearising weights —
the only case ``core.explain`` uses — this is the same loop with the link removed, compiled
once and cached on disk where numba can write (:func:`core.jit.compiled`).
"""
from __future__ import annotations

import numpy as np

from .jit import compiled


@compiled
def fixed_single_output_identity(averaged_outs, last_outs, outputs, batch_positions, varying_rows,
                                 num_varying_rows):
    sample_count = last_outs.shape[0]
    for i in range(len(averaged_outs)):
        if batch_positions[i] < batch_positions[i + 1]:
            if num_varying_rows[i] == sample_count:
                last_outs[:] = outputs[batch_positions[i]:batch_positions[i + 1]]
            else:
                last_outs[varying_rows[i]] = outputs[batch_positions[i]:batch_positions[i + 1]]
            averaged_outs[i] = np.mean(last_outs)
        else:
            averaged_outs[i] = averaged_outs[i - 1]


def patched(original, identity):
    """``original``'s signature; the cached kernel when the link is ``identity``."""

    def build_fixed_single_output(averaged_outs, last_outs, outputs, batch_positions, varying_rows,
                                  num_varying_rows, link, linearizing_weights):
        if link is identity and linearizing_weights is None:
            return fixed_single_output_identity(averaged_outs, last_outs, outputs, batch_positions,
                                                varying_rows, num_varying_rows)
        return original(averaged_outs, last_outs, outputs, batch_positions, varying_rows,
                        num_varying_rows, link, linearizing_weights)

    build_fixed_single_output.unmask_patched = True
    build_fixed_single_output.original = original
    return build_fixed_single_output
