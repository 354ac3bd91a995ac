"""Sequence classification on real data: pixel-by-pixel MNIST (sequential and permuted) and MNIST-1D, every model of
the zoo by name, read out from its last state.

Pixel MNIST (``--dataset mnist``) is the long-range papers' benchmark: each 28 x 28 digit is fed one pixel per step,
row by row (T = 784, sMNIST), or in one fixed order drawn from ``--permutation-seed`` (``--permute``, psMNIST), and
classified from the last state.  The digits come from the Hugging Face Hub (``ylecun/mnist``) when online, or from
``--data-dir`` offline: a folder of the Hub's parquet files, or an ``.npz`` with ``x_train``, ``y_train``,
``x_test``, ``y_test``.

MNIST-1D (``--dataset mnist1d``, the default; Greydanus 2020) runs offline: its own generator makes 4000 training and
1000 test digits of T = 40 steps (``--permute``: its shuffled variant, ``shuffle_seq``; ``--sequence-length``: the
generator's ``final_seq_length``, stretching the same digits to T = 1000 or more, a long-range variant of ours, not a
published benchmark).  ``mnist1d_gru`` is its authors' GRU baseline (greydanus/mnist1d ``notebooks/models.py``,
``train.py``): a bidirectional GRU of 6 units read out by one linear layer over all T outputs flattened, Adam 1e-2,
batch 100, 6000 steps (``args.total_steps`` in the notebook ``building_mnist1d.ipynb`` whose 2020 run matches the
README's GRU column; ``train.py``: 8000), the training examples in order (step i takes examples 100 i mod N onward).  Every other model is read out from its last state.  ``--eval-every 250`` tests every
model every 250 steps, as the authors' ``train_model`` does (``eval_every``); ``--readout-init pytorch`` draws the
readout as ``torch.nn.Linear`` does, the authors' draw (the default, ``lecun``, is Flax's ``Dense``).

The datasets are ``rnnlab.tasks``' (the benchmark's).  Seeds and learning rates of a model train as one program
(``rnnlab.protocol.train_rates``) with checkpoints, ``--resume``, the run folder's lock and progress.  results.json
gives ``test_accuracy[model]`` (median, quartiles, per seed), the dataset, each model's readout and parameters; the
figure is the learning curves.  With ``--eval-every``, ``test_curve[model]`` holds the test accuracy at every
evaluation (``by_step``, each over seeds), its peak per seed over every test (``peak``, ``peak_step``: a choice made on
the test set, not comparable with the authors' six printed tests) and the last.

    python experiments/pixel_mnist.py                                   # MNIST-1D: 8 minutes on 2 CPU cores
    python experiments/pixel_mnist.py --permute                          # MNIST-1D shuffled
    python experiments/pixel_mnist.py --permute --models mnist1d_gru --eval-every 250   # the authors' protocol
    python experiments/pixel_mnist.py --sequence-length 1000 --models gru lstm lru --steps 2000
    python experiments/pixel_mnist.py --dataset mnist --data-dir ~/mnist_parquet --models lstm --hidden 128 \\
        --learning-rate 1e-3 --batch-size 100 --steps 1000                # sMNIST, bounded
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np

from rnnlab import parallel, plots, protocol, zoo
from rnnlab.data import sequences
from rnnlab.experiment import PerModelConfig, RunDir, cut_splits
from rnnlab.experiment.cli import SEED_MAX, ConfigError, cli, flag, option, parse_config, refuse_inapplicable, setup
from rnnlab.experiment.models import clip_rule, clip_written, model_hidden, model_spec
from rnnlab.initializers import HEAD_INITS
from rnnlab.linen import SequenceRegressor
from rnnlab.metrics import over_seeds
from rnnlab.parametrizations import Orthogonal
from rnnlab.sweep import training_bytes
from rnnlab.tasks import MNIST1D, PermutedPixelMNIST, PixelMNIST
from rnnlab.train import OPTIMIZERS, OptimConfig, make_optimizer

AUTHORS_GRU = "mnist1d_gru"  # greydanus/mnist1d's GRUBase: bidirectional, 6 units, flattened readout
# its authors' training (notebooks/train.py: get_model_args), whatever the flags say for the zoo's models
# (steps: the notebook building_mnist1d.ipynb's args.total_steps = 6000, whose run the README reports)
AUTHORS_RECIPE = {"steps": 6000, "batch_size": 100, "optimizer": "adam", "learning_rate": 1e-2, "clip": "off"}
ZOO_ONLY = ("steps", "batch_size", "optimizer", "learning_rate", "clip", "hidden", "orthogonal_learning_rate")
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
        (AUTHORS_GRU, *"rnn irnn lstm lstm_chrono gru exprnn lru mingru minlstm indrnn cornn".split()),
        choices=(AUTHORS_GRU, *zoo.MODELS),
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
        mnist1d, points = self.dataset == "mnist1d", len(self.learning_rate) * self.seeds
        T = self.sequence_length if mnist1d else sequences.MNIST_SIDE**2
        data = MNIST1D_EXAMPLES * T * (8 + 8 + 4) if mnist1d else 0
        widest = max([12] * (AUTHORS_GRU in self.models) + [model_hidden(self, m) for m in self.zoo_models()])
        train = training_bytes(points, max(self.batch_size, EVAL_CHUNK), T, 1, widest)
        length = ("sequence_length",) * mnist1d
        sizes = length + ("learning_rate", "seeds", "batch_size", "hidden", "model_hidden")
        return [(length + ("dataset",), "the sequences", data), (sizes, f"training {points} points", data + train)]

    def check(self):
        super().check()
        mnist, orthogonal = self.dataset == "mnist", any(zoo.MODELS[m].wrap is Orthogonal for m in self.zoo_models())
        several = "holds out examples to pick among several --learning-rate values; one is given"
        shuffle = "(MNIST-1D's shuffle comes from its generator's --data-seed)"
        generator = "no model of --models has an orthogonal generator (exprnn, exprnn_tanh)"
        refuse_inapplicable(  # when each flag applies: typed where it does not, it is refused (in this order)
            self,
            {
                "rmsprop_decay": (self.optimizer == "rmsprop", f"would do nothing: --optimizer is {self.optimizer}"),
                "orthogonal_learning_rate": (orthogonal, f"would do nothing: {generator}"),
                "data_dir": (mnist, "applies to --dataset mnist only"),
                "hub_name": (mnist, "applies to --dataset mnist only"),
                "sequence_length": (not mnist, "applies to --dataset mnist1d only"),
                "data_seed": (not mnist, "applies to --dataset mnist1d only"),
                "permutation_seed": (mnist and self.permute, f"applies to --dataset mnist --permute only {shuffle}"),
                "validation_size": (len(self.learning_rate) > 1, several),
            },
        )
        typed = getattr(self, "explicit_flags", frozenset())
        ignored = typed & set(ZOO_ONLY) - ({"steps"} if self.quick else set())  # --quick's --steps shortens it too
        if not self.zoo_models() and ignored:
            flags = ", ".join(flag(n) for n in sorted(ignored))
            raise ConfigError(
                f"{flags} set the zoo's models; {AUTHORS_GRU} trains its authors' recipe, so they would do nothing"
            )
        if AUTHORS_GRU in self.models and self.dataset == "mnist":
            raise ConfigError(
                f"{AUTHORS_GRU} is MNIST-1D's baseline; it reads T * 12 features, not for --dataset mnist"
            )
        if self.eval_every > (longest := max(self.recipe(name)["steps"] for name in self.models)):
            raise ConfigError(
                f"--eval-every {self.eval_every} exceeds the longest model's {longest} steps: it would "
                "test only after the last step, as without it"
            )
        try:
            clip_rule(self.clip)
        except ValueError as e:
            raise ConfigError(f"--clip: {e}") from None

    def zoo_models(self) -> list[str]:
        return [m for m in self.models if m != AUTHORS_GRU]

    def recipe(self, name: str) -> dict:
        """How model ``name`` trains: the flags, or for mnist1d_gru its authors' recipe."""
        if name == AUTHORS_GRU:  # --quick (a look at the plumbing) shortens it to --steps like the others
            return AUTHORS_RECIPE | ({"steps": self.steps} if self.quick else {})
        # each sweep point sets its own learning rate (TrainState hyperparameters)
        rates = {"optimizer": self.optimizer, "learning_rate": self.learning_rate[0]}
        return {"steps": self.steps, "batch_size": self.batch_size, **rates, "clip": clip_written(self, name)}

    def optimizer_config(self, name: str) -> OptimConfig:
        recipe, orthogonal = self.recipe(name), self.orthogonal_learning_rate
        groups = (("a_hh", orthogonal),) if orthogonal is not None and name != AUTHORS_GRU else ()
        rule = {"rmsprop_decay": self.rmsprop_decay, "group_learning_rates": groups, **clip_rule(recipe["clip"])}
        return OptimConfig(recipe["optimizer"], recipe["learning_rate"], **rule)

    def task(self) -> MNIST1D | PixelMNIST:
        """The dataset the flags name, as ``rnnlab.tasks`` defines it (the benchmark's tasks)."""
        if self.dataset == "mnist1d":
            return MNIST1D(shuffled=self.permute, data_seed=self.data_seed, length=self.sequence_length)
        source = {"data_dir": self.data_dir, "hub_name": self.hub_name}
        if self.permute:
            return PermutedPixelMNIST(**source, permutation_seed=self.permutation_seed)
        return PixelMNIST(**source)


def load_data(cfg: Config) -> tuple[dict, dict]:
    """``(splits, description)``: ``splits[name] = {"x": [N, T, 1], "y": [N]}``, ``train`` and ``test``
    cut to --train-size and --test-size, and with several learning rates ``valid``, the last
    --validation-size training examples (the rate is picked on them, never on the test split)."""
    task = cfg.task()
    about, arrays = task.describe(), task.arrays()
    floats = [s for s, how in about.get("pixels", {}).items() if how.startswith("floats")]
    if floats and not cfg.quiet:  # said once: such files are taken as they are, never cast to uint8
        print(
            f"pixel_mnist.py: note: the {' and '.join(floats)} pixels of {about['source']} are floats in "
            "[0, 1]; used as they are (uint8 pixels are divided by 255)",
            file=sys.stderr,
        )
    valid = cfg.validation_size if len(cfg.learning_rate) > 1 else 0
    data = cut_splits(arrays, cfg.train_size, cfg.test_size, valid)
    about |= {"validation_examples": valid} if valid else {}
    about |= {"sequence_length": int(data["train"]["x"].shape[1])}
    return data, about | {"train_examples": len(data["train"]["y"]), "test_examples": len(data["test"]["y"])}


def classifier(cfg: Config, name: str, T: int) -> tuple[SequenceRegressor, dict]:
    """The model ``name`` with its readout, and how results describe it: the MNIST-1D authors' GRU
    reads all T outputs of both directions, every zoo model its last state."""
    if name == AUTHORS_GRU:
        layer = zoo.make_layer("gru", 6, bidirectional=True)
        about = {"model": "gru", "hidden": 6, "bidirectional": True}
        readout = f"flatten: one linear layer over all {T} outputs of both directions"
        own = {"label": "GRU, bidirectional, flattened readout (MNIST-1D authors' model)"}
    else:
        spec = model_spec(cfg, name)
        layer, about = spec.layer(t_max=T), {"model": name, "hidden": spec.hidden, "bidirectional": False}
        readout, own = "last: one linear layer on the last state", {"label": zoo.label(name, t_max=str(T))}
        own |= {"cell_options": dict(spec.cell_options), "path": spec.resolved_path()}
    model = SequenceRegressor(layer, sequences.NUM_CLASSES, readout=readout.split(":")[0], head_init=cfg.readout_init)
    return model, {**about, "readout": readout, "readout_init": cfg.readout_init, **own}


def run_model(cfg: Config, run: RunDir, name: str, data: dict) -> tuple[dict, dict]:
    """One model at every learning rate x seed, one program (``rnnlab.protocol.train_rates``): how
    results describe it and its recipe, and what it measured (``test``: each seed's test accuracy at
    the rate the validation split picks; with one rate no split is held out)."""
    model, about = classifier(cfg, name, data["train"]["x"].shape[1])
    recipe = cfg.recipe(name)
    if name == AUTHORS_GRU and "valid" in data:  # its recipe has no sweep: the whole training split, in order
        data = data | {"train": {k: np.concatenate([data["train"][k], data["valid"][k]]) for k in ("x", "y")}}
    rates = (AUTHORS_RECIPE["learning_rate"],) if name == AUTHORS_GRU else cfg.learning_rate  # side by side
    steps, batch = recipe["steps"], recipe["batch_size"]
    optimizer = make_optimizer(cfg.optimizer_config(name), steps)
    out = protocol.train_rates(
        run, cfg, name, cfg.task(), model, data, rates, optimizer, steps=steps, batch_size=batch, chunk=EVAL_CHUNK
    )
    kept = {k: out[k] for k in ("learning_rate", "parameters", "learning_rate_sweep")}
    return {**about, **recipe, **kept}, out


def main(argv=None):
    cfg = setup(parse_config(Config, argv, __doc__))
    data, about = load_data(cfg)
    run = RunDir(cfg)
    # models[name]: how it is built and its own recipe (steps, batch, optimizer, learning rate, clip)
    results = {"dataset": about, "seeds": cfg.seeds, "learning_rates": list(cfg.learning_rate)}
    results |= {"models": {}, "test_accuracy": {}, "wall_time_s": {}}
    if published := cfg.task().published():  # MNIST-1D as its authors published it: their numbers beside ours
        results["published"] = published["readme"]
        if AUTHORS_GRU in cfg.models:  # their runs of their GRU, tested every 1000 steps
            results["published_runs"] = published["runs"]
    rows = {}
    with parallel.CompileStats() as compile_stats:
        for name in cfg.models:
            results["models"][name], out = run_model(cfg, run, name, data)
            rows[name] = out["rows"]  # the sweep points of the rate it kept, for the figure
            acc = results["test_accuracy"][name] = over_seeds(out["test"])
            results["wall_time_s"][name] = out["wall_s"]
            if out["test_curve"] is not None:
                results.setdefault("test_curve", {})[name] = out["test_curve"]
            if not cfg.quiet and run.writes:
                per_seed = ", ".join(f"{a:.3f}" for a in acc["per_seed"])
                print(f"{name}: test accuracy {acc['median']:.3f} (per seed {per_seed})", flush=True)
    return run.finish(results, compile_stats, lambda: save_figure(cfg, run, results, rows))


def save_figure(cfg: Config, run: RunDir, results: dict, rows: dict) -> None:
    """The learning curves of the sweep points ``rows[model]`` (the rate each model kept): training loss
    and accuracy, and with --eval-every the test accuracy at every evaluation."""
    about, models, acc = results["dataset"], results["models"], results["test_accuracy"]
    legends = {
        name: f"{m['label']} (H={m['hidden']}, readout {m['readout'].split(':')[0]}, test {acc[name]['median']:.3f})"
        for name, m in models.items()
    }
    curves = lambda key: {legends[name]: run.curve(name, key, rows[name]) for name in models}
    panels = {"cross-entropy, training batch": (curves("loss"), "log")}
    panels["accuracy, training batch"] = (curves("accuracy"), "linear")
    if "test_curve" in results:
        panels[f"test accuracy, every {cfg.eval_every} steps"] = (curves("test_accuracy"), "linear")
    colors = {legends[n]: "tab:olive" if n == AUTHORS_GRU else plots.model_color(n) for n in models}  # beside gru
    title = f"{about['name']}: {about['train_examples']} training / {about['test_examples']} test sequences, {cfg.seeds} seeds"
    if cfg.zoo_models():
        rates = "/".join(f"{lr:g}" for lr in cfg.learning_rate)
        picked = " (picked per model on a validation split)" if len(cfg.learning_rate) > 1 else ""
        title += f"; last-state models: {cfg.optimizer} {rates}{picked}, batch {cfg.batch_size}, {cfg.steps} steps"
    if AUTHORS_GRU in models:
        title += f"; the authors' GRU: Adam 0.01, batch 100, {models[AUTHORS_GRU]['steps']} steps"
    if cfg.readout_init != "lecun":
        title += f"; readouts drawn as {cfg.readout_init} (torch.nn.Linear)"
    subtitle = f"{about['order']}, T = {about['sequence_length']}"
    run.save_figure(plots.curve_panels(panels, title=subtitle, suptitle=title, colors=colors), "learning_curves")


if __name__ == "__main__":
    cli(main)
