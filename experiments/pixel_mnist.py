"""Sequence classification on real data: pixel-by-pixel MNIST (sequential and permuted) and
MNIST-1D, every model of the zoo by name, read out from its last state.

Pixel MNIST (``--dataset mnist``) is the long-range papers' benchmark: each 28 x 28 digit is
fed one pixel per step, row by row (T = 784, sMNIST), or in one fixed order drawn from
``--permutation-seed`` (``--permute``, psMNIST), and classified from the last state.  The
digits come from the Hugging Face Hub (``ylecun/mnist``) when online, or from ``--data-dir``
offline: a folder of the Hub's parquet files, or an ``.npz`` with ``x_train``, ``y_train``,
``x_test``, ``y_test``.

MNIST-1D (``--dataset mnist1d``, the default; Greydanus 2020) runs offline: its own generator
makes 4000 training and 1000 test digits of T = 40 steps (``--permute``: its shuffled
variant, ``shuffle_seq``; ``--sequence-length``: the generator's ``final_seq_length``,
stretching the same digits to T = 1000 or more, a long-range variant of ours, not a
published benchmark).  ``mnist1d_gru`` is its authors' GRU baseline (greydanus/mnist1d
``notebooks/models.py``, ``train.py``): a bidirectional GRU of 6 units read out by one
linear layer over all T outputs flattened, Adam 1e-2, batch 100, 6000 steps (the notebook
``building_mnist1d.ipynb`` behind the README's numbers sets ``args.total_steps = 6000``;
``train.py``'s default is 8000), the training examples in their order (step i takes
examples 100 i mod N onward).  Every other model is read out from its last state.
``--eval-every 250`` tests every model every 250 steps, as the authors' ``train_model``
does (``eval_every``); ``--readout-init pytorch`` draws the readout as ``torch.nn.Linear``
does instead of Flax's ``Dense``.

Seeds of a model train as one program (``rnnlab.sweep``) with checkpoints, ``--resume``,
the run folder's lock and progress.  results.json gives ``test_accuracy[model]`` (median,
quartiles, per seed), the dataset, each model's readout and parameters; the figure is the
learning curves.  With ``--eval-every``, ``test_curve[model]`` holds the test accuracy at every
evaluation (``by_step``, each over seeds), its peak per seed (``peak``, ``peak_step``) and the last.

    python experiments/pixel_mnist.py                                   # MNIST-1D: 8 minutes on 2 CPU cores
    python experiments/pixel_mnist.py --permute                          # MNIST-1D shuffled
    python experiments/pixel_mnist.py --permute --models mnist1d_gru --eval-every 250   # the authors' protocol
    python experiments/pixel_mnist.py --sequence-length 1000 --models gru lstm lru --steps 2000
    python experiments/pixel_mnist.py --dataset mnist --data-dir ~/mnist_parquet --models lstm --hidden 128 \\
        --learning-rate 1e-3 --batch-size 100 --steps 1000                # sMNIST, bounded
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import textwrap
import time
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rnnlab import parallel, plots, zoo
from rnnlab.data import sequences
from rnnlab.experiment import (
    SEED_MAX,
    ConfigError,
    PerModelConfig,
    RunDir,
    cli,
    clip_rule,
    clip_written,
    model_hidden,
    model_spec,
    option,
    parse_config,
    refuse_unused,
    setup,
    train_sweep,
)
from rnnlab.experiment.rundir import read_metrics
from rnnlab.initializers import HEAD_INITS
from rnnlab.linen import SequenceRegressor, constrain_recurrent
from rnnlab.metrics import over_seeds
from rnnlab.parametrizations import Orthogonal
from rnnlab.sweep import Sweep, grid, init_params, rows_where, training_bytes
from rnnlab.train import OPTIMIZERS, OptimConfig, make_optimizer
from rnnlab.zoo import MODELS, label

AUTHORS_GRU = "mnist1d_gru"  # greydanus/mnist1d's GRUBase: bidirectional, 6 units, flattened readout
# its authors' training (notebooks/train.py: get_model_args), whatever the flags say for the zoo's models
# (steps: the notebook building_mnist1d.ipynb's args.total_steps = 6000, whose run the README reports)
AUTHORS_RECIPE = {"steps": 6000, "batch_size": 100, "optimizer": "adam", "learning_rate": 1e-2, "clip": "off"}
ZOO_ONLY = ("steps", "batch_size", "optimizer", "learning_rate", "clip", "hidden", "orthogonal_learning_rate")
MNIST1D_ONLY = ("sequence_length", "data_seed")
MNIST_ONLY = ("data_dir", "hub_name")
MNIST1D_EXAMPLES = 5000  # what its generator makes, 4000 to train and 1000 to test
EVAL_CHUNK = 250  # test examples per evaluation program (T = 784 keeps [S, chunk, T, H] outputs in memory)


@dataclasses.dataclass
class Config(PerModelConfig):
    out: str = "runs/pixel_mnist"
    dataset: str = option("mnist1d", choices=("mnist1d", "mnist"))
    data_dir: str = ""  # MNIST offline: a folder of the Hub's parquet files, or an .npz
    hub_name: str = "ylecun/mnist"  # MNIST online (Hugging Face Hub)
    # MNIST: one fixed permutation of the 784 pixels from --permutation-seed; MNIST-1D: its shuffle_seq variant
    permute: bool = False
    permutation_seed: int = option(0, ge=0, le=SEED_MAX)
    sequence_length: int = option(40, ge=2)  # MNIST-1D's final_seq_length (40: the published dataset)
    data_seed: int = option(42, ge=0, le=SEED_MAX)  # MNIST-1D's generator seed (42: the published dataset)
    # every model of the zoo, read out from its last state, beside the MNIST-1D authors' GRU
    models: tuple[str, ...] = option(
        (
            AUTHORS_GRU,
            "rnn",
            "irnn",
            "lstm",
            "lstm_chrono",
            "gru",
            "exprnn",
            "lru",
            "mingru",
            "minlstm",
            "indrnn",
            "cornn",
        ),
        choices=(AUTHORS_GRU, *MODELS),
    )
    # the settings below are the zoo models'; mnist1d_gru always trains its authors' recipe (AUTHORS_RECIPE)
    hidden: int = option(32, ge=1)
    model_hidden: tuple[str, ...] = ()  # MODEL=H overrides --hidden (mnist1d_gru is always 6)
    seeds: int = option(3, ge=1)
    batch_size: int = option(100, ge=1)
    steps: int = option(2000, ge=1)
    optimizer: str = option("adam", choices=OPTIMIZERS)
    # a sweep axis: with several values each zoo model trains at every one (x seeds, one program), the last
    # --validation-size training examples are held out, and the rate with the best median validation accuracy is kept
    learning_rate: tuple[float, ...] = option((1e-2,), gt=0.0)
    validation_size: int = option(500, ge=1)
    # expRNN's orthogonal generators (a_hh) at their own rate; unset: --learning-rate
    orthogonal_learning_rate: float | None = option(None, gt=0.0)
    rmsprop_decay: float = option(0.9, ge=0.0, lt=1.0)
    clip: str = "off"  # off, norm:X or value:X (the MNIST-1D authors do not clip)
    model_clip: tuple[str, ...] = ()  # MODEL=RULE overrides --clip
    train_size: int = option(0, ge=0)  # 0: the whole training split; N: its first N examples
    test_size: int = option(0, ge=0)  # 0: the whole test split
    log_every: int = option(100, ge=1)
    checkpoint_every: int = option(1000, ge=0)
    # test accuracy every k steps (and at the last), kept as a curve; 0: only after the last step.
    # The MNIST-1D authors test every 250 (train.py's eval_every) and their README quotes one of those tests
    eval_every: int = option(0, ge=0)
    # the linear readout's initial draw: lecun (Flax Dense: LeCun normal, zero bias) or pytorch
    # (torch.nn.Linear, the authors' GRUBase: weight and bias U(+-1/sqrt(fan_in)))
    readout_init: str = option("lecun", choices=HEAD_INITS)

    def apply_quick(self):
        self.steps, self.seeds, self.hidden, self.log_every = 40, 2, 16, 10
        self.train_size, self.test_size, self.models = 400, 200, (AUTHORS_GRU, "gru", "lru")

    def memory_needs(self):
        """The least the data and one model's training allocate: MNIST-1D's generator holds its
        5000 digits of T float64 steps twice (a list, then stacked) beside the float32 copy; each
        model trains learning rates x seeds points on batches of T steps, evaluated EVAL_CHUNK at a time."""
        T = self.sequence_length if self.dataset == "mnist1d" else sequences.MNIST_SIDE**2
        data = MNIST1D_EXAMPLES * T * (8 + 8 + 4) if self.dataset == "mnist1d" else 0
        points = len(self.learning_rate) * self.seeds
        hidden = max(  # the widest model: the run trains every one
            [12] * (AUTHORS_GRU in self.models) + [model_hidden(self, m) for m in self.models if m != AUTHORS_GRU]
        )
        train = training_bytes(points, max(self.batch_size, EVAL_CHUNK), T, 1, hidden)
        length = ("sequence_length",) if self.dataset == "mnist1d" else ()
        return [
            (length + ("dataset",), "the sequences", data),
            (
                length + ("learning_rate", "seeds", "batch_size", "hidden", "model_hidden"),
                f"training {points} points",
                data + train,
            ),
        ]

    def check(self):
        super().check()
        refuse_unused(
            self,
            {
                "rmsprop_decay": (self.optimizer == "rmsprop", f"--optimizer is {self.optimizer}"),
                "orthogonal_learning_rate": (
                    any(MODELS[m].wrap is Orthogonal for m in self.models if m != AUTHORS_GRU),
                    "no model of --models has an orthogonal generator (exprnn, exprnn_tanh)",
                ),
            },
        )
        typed = getattr(self, "explicit_flags", frozenset())
        other = "mnist" if self.dataset == "mnist1d" else "mnist1d"
        for name in MNIST_ONLY if self.dataset == "mnist1d" else MNIST1D_ONLY:
            if name in typed:
                raise ConfigError(f"--{name.replace('_', '-')} applies to --dataset {other} only")
        if "permutation_seed" in typed and not (self.dataset == "mnist" and self.permute):
            raise ConfigError(
                "--permutation-seed applies to --dataset mnist --permute only (MNIST-1D's shuffle "
                "comes from its generator's --data-seed)"
            )
        if "validation_size" in typed and len(self.learning_rate) == 1:
            raise ConfigError(
                "--validation-size holds out examples to pick among several --learning-rate values; one is given"
            )
        ignored = typed & set(ZOO_ONLY) - ({"steps"} if self.quick else set())  # --quick's --steps shortens it too
        if set(self.models) == {AUTHORS_GRU} and ignored:
            flags = ", ".join(f"--{n.replace('_', '-')}" for n in sorted(ignored))
            raise ConfigError(
                f"{flags} set the zoo's models; {AUTHORS_GRU} trains its authors' recipe, so they would do nothing"
            )
        if AUTHORS_GRU in self.models and self.dataset != "mnist1d":
            raise ConfigError(
                f"{AUTHORS_GRU} is MNIST-1D's baseline; it reads T * 12 features, not for --dataset mnist"
            )
        longest = max(self.recipe(name)["steps"] for name in self.models)
        if self.eval_every > longest:
            raise ConfigError(
                f"--eval-every {self.eval_every} exceeds the longest model's {longest} steps: it would "
                "test only after the last step, as without it"
            )
        try:
            clip_rule(self.clip)
        except ValueError as e:
            raise ConfigError(f"--clip: {e}") from None

    def recipe(self, name: str) -> dict:
        """How model ``name`` trains: the flags, or for mnist1d_gru its authors' recipe."""
        if name == AUTHORS_GRU:  # --quick (a look at the plumbing) shortens it to --steps like the others
            return AUTHORS_RECIPE | ({"steps": self.steps} if self.quick else {})
        return {
            "steps": self.steps,
            "batch_size": self.batch_size,
            "optimizer": self.optimizer,
            "learning_rate": self.learning_rate[0],  # each sweep point sets its own (TrainState hyperparameters)
            "clip": clip_written(self, name),
        }

    def optimizer_config(self, name: str) -> OptimConfig:
        recipe = self.recipe(name)
        groups = () if self.orthogonal_learning_rate is None else (("a_hh", self.orthogonal_learning_rate),)
        return OptimConfig(
            recipe["optimizer"],
            recipe["learning_rate"],
            rmsprop_decay=self.rmsprop_decay,
            group_learning_rates=groups if name != AUTHORS_GRU else (),
            **clip_rule(recipe["clip"]),
        )


def load_data(cfg: Config) -> tuple[dict, dict]:
    """``(arrays, description)``: ``x_train [N, T, 1]``, ``y_train [N]``, ``x_test``, ``y_test``."""
    if cfg.dataset == "mnist1d":
        data = sequences.mnist1d(cfg.data_seed, shuffle=cfg.permute, sequence_length=cfg.sequence_length)
        about = {
            "name": "MNIST-1D (Greydanus 2020), generated by the mnist1d package",
            "order": "shuffled (shuffle_seq)" if cfg.permute else "sequential",
            "generator_seed": cfg.data_seed,
        }
    else:
        images = sequences.load_mnist(cfg.hub_name, cfg.data_dir or None)
        permutation = sequences.fixed_permutation(cfg.permutation_seed, 28 * 28) if cfg.permute else None
        data = {
            "x_train": sequences.pixel_sequences(images["x_train"], permutation),
            "y_train": images["y_train"],
            "x_test": sequences.pixel_sequences(images["x_test"], permutation),
            "y_test": images["y_test"],
        }
        about = {
            "name": "MNIST, pixel by pixel",
            "source": cfg.data_dir or cfg.hub_name,
            "order": f"permuted (seed {cfg.permutation_seed})" if cfg.permute else "sequential (row by row)",
            "pixels": {s: pixel_scale(images[f"x_{s}"]) for s in sequences.SPLITS},
        }
        floats = [s for s, how in about["pixels"].items() if how.startswith("floats")]
        if floats and not cfg.quiet:  # said once: such files are taken as they are, never cast to uint8
            print(
                f"pixel_mnist.py: note: the {' and '.join(floats)} pixels of {about['source']} are floats in "
                "[0, 1]; used as they are (uint8 pixels are divided by 255)",
                file=sys.stderr,
            )
    for split, size in (("train", cfg.train_size), ("test", cfg.test_size)):
        if size:
            if size > len(data[f"y_{split}"]):
                raise ConfigError(f"--{split}-size {size} exceeds the {len(data[f'y_{split}'])} examples of the split")
            data[f"x_{split}"], data[f"y_{split}"] = data[f"x_{split}"][:size], data[f"y_{split}"][:size]
    if len(cfg.learning_rate) > 1:  # the learning rate is picked on held-out training examples, never on the test split
        n = cfg.validation_size
        if n >= len(data["y_train"]):
            raise ConfigError(
                f"--validation-size {n} leaves no training examples (the split has {len(data['y_train'])})"
            )
        data["x_valid"], data["y_valid"] = data["x_train"][-n:], data["y_train"][-n:]
        data["x_train"], data["y_train"] = data["x_train"][:-n], data["y_train"][:-n]
        about["validation_examples"] = n
    about |= {
        "sequence_length": int(data["x_train"].shape[1]),
        "train_examples": len(data["y_train"]),
        "test_examples": len(data["y_test"]),
    }
    return data, about


def pixel_scale(x) -> str:
    """How ``pixel_sequences`` reads these pixels."""
    return "floats in [0, 1], used as they are" if x.dtype != np.uint8 else "uint8 0-255, divided by 255"


def classifier(cfg: Config, name: str, T: int) -> tuple[SequenceRegressor, dict]:
    """The model ``name`` with its readout, and how results describe it."""
    if name == AUTHORS_GRU:
        layer = zoo.make_layer("gru", 6, bidirectional=True)
        return SequenceRegressor(layer, sequences.NUM_CLASSES, readout="flatten", head_init=cfg.readout_init), {
            "model": "gru",
            "hidden": 6,
            "bidirectional": True,
            "readout": f"flatten: one linear layer over all {T} outputs of both directions",
            "readout_init": cfg.readout_init,
            "label": "GRU, bidirectional, flattened readout (MNIST-1D authors' model)",
        }
    spec = model_spec(cfg, name)
    return SequenceRegressor(spec.layer(t_max=T), sequences.NUM_CLASSES, readout="last", head_init=cfg.readout_init), {
        "model": name,
        "hidden": spec.hidden,
        "bidirectional": False,
        "readout": "last: one linear layer on the last state",
        "readout_init": cfg.readout_init,
        "label": label(name, t_max=str(T)),
        "cell_options": dict(spec.cell_options),
        "path": spec.resolved_path(),
    }


def cross_entropy_and_accuracy(model: SequenceRegressor, params, batch) -> tuple[jax.Array, jax.Array]:
    logits_bk = model.apply(params, batch["x"])
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits_bk, batch["y"]))
    return loss, jnp.mean(jnp.argmax(logits_bk, -1) == batch["y"])


def authors_batches(data: dict, batch_size: int, seeds: int):
    """``batch(step) -> {x: [S, B, T, 1], y: [S, B]}``: the MNIST-1D authors' order, examples
    ``(step * B + i) mod N`` for every seed (the seeds differ in their initial draw)."""
    n = len(data["y_train"])

    def batch(step: int) -> dict:
        rows = (step * batch_size + np.arange(batch_size)) % n
        one = {"x": data["x_train"][rows], "y": data["y_train"][rows]}
        return {k: np.broadcast_to(v, (seeds,) + v.shape) for k, v in one.items()}

    return batch


@functools.cache
def initializer(model: SequenceRegressor, shape: tuple[int, ...]):
    return jax.jit(lambda key: model.init(key, jnp.zeros(shape, jnp.float32)))


@functools.cache
def predictor(model: SequenceRegressor):
    """``(params, batch) -> classes``, one function per model: a sweep compiles it once (``--eval-every``)."""
    return lambda params, batch: jnp.argmax(model.apply(params, batch["x"]), -1)


def accuracy(sweep: Sweep, model: SequenceRegressor, params_s, data: dict, split: str = "test") -> np.ndarray:
    """Each sweep point's accuracy on a whole split, in chunks of ``EVAL_CHUNK`` (one program)."""
    x, y = data[f"x_{split}"], data[f"y_{split}"]
    hits = np.zeros(len(sweep))
    for start in range(0, len(y), EVAL_CHUNK):
        rows = np.arange(start, start + EVAL_CHUNK) % len(y)  # the last chunk wraps: same shape, counted once
        keep = np.arange(start, start + EVAL_CHUNK) < len(y)
        batch = {
            "x": np.broadcast_to(x[rows], (len(sweep),) + x[rows].shape),
            "y": np.broadcast_to(y[rows], (len(sweep), EVAL_CHUNK)),
        }
        predictions = sweep.run(predictor(model), params_s, batch)
        hits += np.sum((predictions == y[rows])[:, keep], axis=1)
    return hits / len(y)


def run_model(cfg: Config, run: RunDir, name: str, data: dict) -> dict:
    """Train every learning rate x seed of one model in one program; the rate the validation split
    picks (with one rate, no split is held out), and each seed's test accuracy at it."""
    T = data["x_train"].shape[1]
    model, about = classifier(cfg, name, T)
    rates = (AUTHORS_RECIPE["learning_rate"],) if name == AUTHORS_GRU else cfg.learning_rate
    if name == AUTHORS_GRU and "x_valid" in data:  # its recipe has no sweep: the whole training split, in order
        data = data | {
            k: np.concatenate([data[f"{k}"], data[k.replace("train", "valid")]]) for k in ("x_train", "y_train")
        }
    sweep = Sweep(grid(learning_rate=rates, seed=range(cfg.seeds)))
    keys = jax.random.split(jax.random.fold_in(jax.random.key(cfg.seed), zlib_crc(name)), cfg.seeds)
    keys = keys[sweep.column("seed")]
    init = initializer(model, (1, T, 1))
    params0 = init_params(sweep, lambda key, p: init(key), keys)

    def loss_fn(params, batch, key):
        loss, accuracy = cross_entropy_and_accuracy(model, params, batch)
        return loss, {"accuracy": accuracy}

    def evaluate(state) -> dict:  # every --eval-every steps: each point's test accuracy
        return {"test_accuracy": accuracy(sweep, model, sweep.gather(state.params), data)}

    recipe = cfg.recipe(name)
    started = time.perf_counter()
    state = train_sweep(
        run,
        name,
        cfg,
        sweep,
        params=params0,
        loss_fn=loss_fn,
        optimizer=make_optimizer(cfg.optimizer_config(name), recipe["steps"]),
        hyperparameters=("learning_rate",),
        num_steps=recipe["steps"],
        batch_fn=authors_batches(data, recipe["batch_size"], len(sweep)),
        init_keys=keys,
        tolerate_diverged=True,
        constrain=functools.partial(constrain_recurrent, model.layer),
        evaluate=evaluate if cfg.eval_every else None,
        evaluate_every=cfg.eval_every,
    )
    wall_s = time.perf_counter() - started
    test_s = accuracy(sweep, model, state.params, data)
    lr_s = sweep.column("learning_rate")
    sweep_rows = [{"learning_rate": lr, "test_accuracy": over_seeds(test_s[lr_s == lr])} for lr in rates]
    chosen = rates[0]
    if len(rates) > 1:
        valid_s = accuracy(sweep, model, state.params, data, "valid")
        for row in sweep_rows:
            row["validation_accuracy"] = over_seeds(valid_s[lr_s == row["learning_rate"]])
        scores = [row["validation_accuracy"]["median"] for row in sweep_rows]
        chosen = rates[int(np.argmax([-np.inf if np.isnan(v) else v for v in scores]))]
    curve = test_curve(run, name, lr_s == chosen) if cfg.eval_every else None
    return {
        **about,
        **recipe,
        "test_curve": curve,
        "learning_rate": chosen,
        "parameters": int(sum(leaf[0].size for leaf in jax.tree.leaves(params0))),
        "test_accuracy": test_s[lr_s == chosen],
        "learning_rate_sweep": sweep_rows,
        "wall_s": wall_s,
    }


def test_curve(run: RunDir, name: str, rows) -> dict:
    """The test accuracy of the sweep points ``rows`` (the chosen rate's seeds) at every evaluation
    in the run's log: ``by_step[step]`` over seeds, each seed's ``peak`` and ``peak_step``."""
    records = [r for r in read_metrics(run.metrics_path) if r.get("model") == name and "test_accuracy" in r]
    steps = [r["step"] for r in records]
    acc_sn = np.array([r["test_accuracy_per_point"] for r in records], np.float64).T[rows]
    best_s = np.argmax(np.where(np.isfinite(acc_sn), acc_sn, -np.inf), axis=1)
    return {
        "by_step": {str(step): over_seeds(acc_sn[:, n]) for n, step in enumerate(steps)},
        "peak": over_seeds(acc_sn[np.arange(len(acc_sn)), best_s]),
        "peak_step": [steps[n] for n in best_s],
    }


def zlib_crc(name: str) -> int:
    """A model's own stream of initial draws, the same on every machine (``hash`` is salted)."""
    return zlib.crc32(name.encode())


# what the MNIST-1D authors' README reports (greydanus/mnist1d README.md, "Comparing MNIST and MNIST-1D")
PUBLISHED_MNIST1D = {
    "sequential": {"GRU (bidirectional, 6 units, flattened readout)": 0.91, "CNN": 0.94},
    "shuffled (shuffle_seq)": {"GRU (bidirectional, 6 units, flattened readout)": 0.57, "CNN": 0.56},
}
# the authors' runs of GRUBase (seed 42, 6000 steps), the test accuracy the notebook building_mnist1d.ipynb prints every
# 1000 steps: as committed in 2020 (d18aed1, the run whose largest values the README quotes: 91.1 at step 6000, 57.2 at
# 1000) and as the authors reran the same notebook in 2024 (9e0b8f1, "Rerun and debug notebooks")
PUBLISHED_MNIST1D_RUNS = {
    "sequential": {
        "2020 (d18aed1)": [0.880, 0.883, 0.897, 0.878, 0.901, 0.911],
        "2024 rerun (9e0b8f1)": [0.852, 0.872, 0.854, 0.886, 0.905, 0.908],
    },
    "shuffled (shuffle_seq)": {
        "2020 (d18aed1)": [0.572, 0.550, 0.540, 0.547, 0.538, 0.541],
        "2024 rerun (9e0b8f1)": [0.530, 0.535, 0.532, 0.534, 0.517, 0.508],
    },
}


def main(argv=None):
    cfg = setup(parse_config(Config, argv, __doc__))
    data, about = load_data(cfg)
    run = RunDir(cfg)
    results = {
        "dataset": about,
        "seeds": cfg.seeds,
        "learning_rates": list(cfg.learning_rate),
        "models": {},  # each with its own recipe: steps, batch, optimizer, learning rate, clip
        "test_accuracy": {},
        "wall_time_s": {},
    }
    if cfg.dataset == "mnist1d" and about["sequence_length"] == 40 and cfg.data_seed == 42:
        order = "shuffled (shuffle_seq)" if cfg.permute else "sequential"
        results["published"] = PUBLISHED_MNIST1D[order]
        if AUTHORS_GRU in cfg.models:
            steps = [str(k) for k in range(1000, 7000, 1000)]
            results["published_runs"] = {who: dict(zip(steps, v)) for who, v in PUBLISHED_MNIST1D_RUNS[order].items()}
    with parallel.CompileStats() as compile_stats:
        for name in cfg.models:
            out = run_model(cfg, run, name, data)
            results["test_accuracy"][name] = over_seeds(out.pop("test_accuracy"))
            results["wall_time_s"][name] = out.pop("wall_s")
            if out["test_curve"] is not None:
                results.setdefault("test_curve", {})[name] = out["test_curve"]
            out.pop("test_curve")
            results["models"][name] = out
            if not cfg.quiet and run.writes:
                acc = results["test_accuracy"][name]
                print(
                    f"{name}: test accuracy {acc['median']:.3f} (per seed {', '.join(f'{a:.3f}' for a in acc['per_seed'])})",
                    flush=True,
                )
    return run.finish(results, compile_stats, lambda: save_figure(cfg, run, results))


def save_figure(cfg: Config, run: RunDir, results: dict) -> None:
    about = results["dataset"]
    kinds = [("loss", "cross-entropy, training batch", "log"), ("accuracy", "accuracy, training batch", "linear")]
    if "test_curve" in results:  # --eval-every: the test accuracy at every evaluation, a third panel
        kinds.append(("test", f"test accuracy, every {cfg.eval_every} steps", "linear"))
    fig, axes = plots.panels(len(kinds), width=6.4, height=5.6, sharey=False)
    for ax, (key, ylabel, yscale) in zip(axes, kinds):
        curves, colors = {}, {}
        for name, m in results["models"].items():
            acc = results["test_accuracy"][name]["median"]
            legend = f"{m['label']} (H={m['hidden']}, readout {m['readout'].split(':')[0]}, test {acc:.3f})"
            if key == "test":
                by_step = results["test_curve"][name]["by_step"]
                values = np.array([by_step[step]["per_seed"] for step in by_step]).T
                curves[legend] = ([int(step) for step in by_step], values)
            else:
                steps, values_sn = run.curve(name, key)
                rates = (AUTHORS_RECIPE["learning_rate"],) if name == AUTHORS_GRU else cfg.learning_rate
                points = grid(learning_rate=rates, seed=range(cfg.seeds))  # run_model's rows
                curves[legend] = (steps, values_sn[rows_where(points, learning_rate=m["learning_rate"])])
            colors[legend] = "tab:olive" if name == AUTHORS_GRU else plots.model_color(name)  # beside the zoo's GRU
        plots.learning_curves(
            curves,
            colors=colors,
            ax=ax,
            ylabel=ylabel,
            title=f"{about['order']}, T = {about['sequence_length']}",
            yscale=yscale,
        )
        ax.get_legend().remove()
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=3, fontsize=7)  # one legend for both panels
    zoo_models = [m for m in results["models"] if m != AUTHORS_GRU]
    title = f"{about['name']}: {about['train_examples']} training / {about['test_examples']} test sequences, {cfg.seeds} seeds"
    if zoo_models:
        rates = "/".join(f"{lr:g}" for lr in cfg.learning_rate)
        picked = " (picked per model on a validation split)" if len(cfg.learning_rate) > 1 else ""
        title += f"; last-state models: {cfg.optimizer} {rates}{picked}, batch {cfg.batch_size}, {cfg.steps} steps"
    if AUTHORS_GRU in results["models"]:
        title += f"; the authors' GRU: Adam 0.01, batch 100, {results['models'][AUTHORS_GRU]['steps']} steps"
    if cfg.readout_init != "lecun":
        title += f"; readouts drawn as {cfg.readout_init} (torch.nn.Linear)"
    fig.suptitle(textwrap.fill(title, 150), fontsize=9)
    run.save_figure(fig, "learning_curves")


if __name__ == "__main__":
    cli(main)
