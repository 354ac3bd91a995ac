"""A first look at rnnlab: how far back can a freshly initialised RNN, LSTM and GRU "see"?

For each model we take the last step's output y_T of a random input sequence
and measure ||d y_T / d x_t|| for every earlier step t in one backward pass.
A vanilla tanh RNN's sensitivity decays geometrically with the distance
T - t (vanishing gradients); an LSTM with forget-gate bias 1 keeps it far
longer.  Everything runs on the pure core: cells -> lax.scan -> jax.grad.

    python experiments/demo.py [--steps 200] [--hidden 64] [--seeds 8]
"""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import RNN, zoo
from rnnlab.experiment import SEED_MAX, cli, option, parse_config
from rnnlab.sweep import training_bytes


@dataclasses.dataclass
class Config:
    steps: int = option(200, ge=2)  # sequence length T
    hidden: int = option(64, ge=1)  # hidden units
    inputs: int = option(2, ge=1)  # input features
    seeds: int = option(8, ge=1)  # sequences (batch size)
    models: tuple[str, ...] = option(("rnn", "lstm", "gru"), choices=tuple(zoo.MODELS))
    seed: int = option(0, ge=0, le=SEED_MAX)
    json: bool = False  # print the curves as JSON

    def memory_needs(self):
        need = training_bytes(1, self.seeds, self.steps, self.inputs, self.hidden)
        return [(("steps", "seeds", "hidden", "inputs"), "the sequences and their states", need)]


def input_sensitivity(layer: RNN, params, x_bti) -> jax.Array:
    """``||d y_T / d x_t||`` for each t, median over the batch: ``[T]``.

    One VJP of the summed last output against the whole input sequence.
    """
    last_output = lambda x: jnp.sum(layer.apply(params, x)[0][:, -1])
    grad_bti = jax.grad(last_output)(x_bti)
    return jnp.median(jnp.linalg.norm(grad_bti, axis=-1), axis=0)


def main(argv=None):
    args = parse_config(Config, argv, __doc__)

    key_x, key_p = jax.random.split(jax.random.key(args.seed))
    x_bti = jax.random.uniform(key_x, (args.seeds, args.steps, args.inputs))
    distances = [d for d in (0, 1, 5, 10, 20, 50, 100, 200, 500, 1000) if d < args.steps]
    curves = {}
    for model in args.models:
        name = zoo.label(model, forget_bias=1.0, t_max=args.steps)
        layer = zoo.make_layer(model, args.hidden, forget_bias=1.0, t_max=args.steps)
        params = layer.init(key_p, args.inputs)
        sensitivity_t = np.asarray(jax.jit(lambda p, x: input_sensitivity(layer, p, x))(params, x_bti))
        curves[name] = {d: float(sensitivity_t[args.steps - 1 - d]) for d in distances}

    if args.json:
        print(json.dumps(curves, indent=1))
        return curves
    print(f"||d y_T / d x_t|| at initialisation, T={args.steps}, H={args.hidden}, median of {args.seeds} sequences")
    print(f"{'distance T-t':>26s}" + "".join(f"{d:>10d}" for d in distances))
    for name, curve in curves.items():
        print(f"{name:>26s}" + "".join(f"{curve[d]:10.1e}" for d in distances))
    return curves


if __name__ == "__main__":
    cli(main)
