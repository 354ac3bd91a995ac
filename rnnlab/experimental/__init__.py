"""Execution paths not yet shown to win anywhere, called on purpose and never a default.

    from rnnlab.experimental import apply_one_scan, apply_wavefront
    outputs, final = apply_one_scan(layer, params, x, lengths)    # both directions in one scan
    outputs, final = apply_wavefront(layer, params, x, lengths)   # a stack as one scan of T + L - 1 steps

Each equals ``layer.apply`` in values and gradients (tests/test_experimental.py);
their speed is in benchmarks/README.md (``bench_stacked.py``).  ``jax.experimental.rnn``
is the precedent.
"""

from rnnlab.experimental.bidirectional import apply_one_scan, unroll_both_directions
from rnnlab.experimental.wavefront import apply_wavefront, unroll_layers

__all__ = ["apply_one_scan", "apply_wavefront", "unroll_both_directions", "unroll_layers"]
