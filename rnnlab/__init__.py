"""rnnlab: recurrent networks in JAX, written as pure functions.

from rnnlab import LSTMCell, RNN
layer = RNN(LSTMCell(64), num_layers=2, bidirectional=True)
params = layer.init(jax.random.key(0), input_size=8)
outputs, (h_n, c_n) = layer.apply(params, x_bti, lengths=lengths_b)
"""

from rnnlab.cells import ElmanCell, GRUCell, LSTMCell, LSTMState
from rnnlab.layers import RNN
from rnnlab.newton import NewtonOptions
from rnnlab.unroll import reverse_valid_prefix, unroll

__all__ = ["ElmanCell", "GRUCell", "LSTMCell", "LSTMState", "NewtonOptions", "RNN", "reverse_valid_prefix", "unroll"]
__version__ = "0.1.0"
