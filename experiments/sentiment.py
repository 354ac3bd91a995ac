"""Sentiment analysis with a bidirectional RNN.

    Embed -> Bi-RNN (LSTM/GRU/RNN) over the valid words of each review -> pooling
    (final states of both directions, or the masked mean) -> Dense(classes)

The offline default is a generated task whose labels need the words on both
sides of a sentiment word ("not good"; "good , but not great"), placed early in
a long review. A unidirectional model with the same size is trained beside the
bidirectional one, so the comparison is direct.

    python experiments/sentiment.py
    python experiments/sentiment.py --train reviews.csv --test reviews_test.csv   # columns text, label
                                                                                  # (labels 0..C-1 or names)
    python experiments/sentiment.py --train imdb                                  # a Hub dataset, when online
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from rnnlab import RNN
from rnnlab.data import WordVocab, pad_sequences
from rnnlab.data.files import looks_local
from rnnlab.data.synthetic import negation_reviews
from rnnlab.data.text import Labelled, load_labelled
from rnnlab.experiment import (
    BaseConfig,
    ConfigError,
    RunDir,
    cli,
    option,
    parse_config,
    refuse_unused,
    setup,
    train_seeds,
)
from rnnlab.linen import SequenceClassifier
from rnnlab.metrics import confusion_matrix
from rnnlab.plots import learning_curves
from rnnlab.sweep import training_bytes
from rnnlab.train import OptimConfig, make_optimizer
from rnnlab.validation import InputError
from rnnlab.zoo import CELLS, make_cell


@dataclasses.dataclass
class Config(BaseConfig):
    out: str = "runs/sentiment"
    train: str = ""  # empty: the generated negation task; else a CSV/JSON file or a Hub name
    test: str = ""  # a file, or empty: the Hub dataset's "test" split / a generated test set
    text_column: str = "text"
    label_column: str = "label"
    train_size: int = option(4000, ge=2)  # generated task
    test_size: int = option(1000, ge=1)
    min_words: int = option(40, ge=8)  # generated reviews: the sentiment phrase is near the start, filler follows
    max_words: int = option(80, ge=8)
    max_len: int = option(200, ge=1)
    min_freq: int = option(1, ge=1)
    cell: str = option("lstm", choices=CELLS)
    hidden: int = option(32, ge=1)
    embed: int = option(32, ge=1)
    pooling: str = option("final", choices=("final", "mean"))
    directions: tuple[str, ...] = option(("bi", "uni"), choices=("bi", "uni"))
    batch_size: int = option(64, ge=1)
    steps: int = option(800, ge=1)
    learning_rate: float = option(3e-3, gt=0.0)
    clip_norm: float = option(1.0, ge=0.0)  # 0: no clipping
    log_every: int = option(20, ge=1)

    def apply_quick(self):
        self.train_size, self.test_size, self.steps, self.checkpoint_every = 2000, 500, 300, 100
        self.min_words, self.max_words = 16, 40

    def memory_needs(self):
        """The generated reviews' ids (at most --max-words, cut at --max-len) and a training batch of
        them, both directions (a file's reviews: unknown here, at least one word)."""
        words = 1 if self.train else min(self.max_words, self.max_len)
        reviews = 0 if self.train else (self.train_size + self.test_size) * words * 4
        batch = training_bytes(1, self.batch_size, words, self.embed, 2 * self.hidden)
        return [
            (("train_size", "max_words", "max_len", "batch_size", "hidden", "embed"), "the reviews", reviews + batch)
        ]

    def check(self):
        super().check()
        generated = (not self.train, "--train gives the reviews")
        from_file = (bool(self.train), "it applies to --train's data; give --train too")
        rules = {name: generated for name in ("train_size", "test_size", "min_words", "max_words")}
        rules |= {name: from_file for name in ("test", "text_column", "label_column")}
        refuse_unused(self, rules)
        if self.max_words < self.min_words:
            raise ConfigError(f"--max-words must be >= --min-words = {self.min_words}, got {self.max_words}")


def load_data(cfg: Config) -> tuple[Labelled, Labelled]:
    """Training and test reviews; the test labels use the training file's class names."""
    if not cfg.train:
        generated = lambda stream, size: Labelled(
            *negation_reviews((cfg.seed, stream), size, cfg.min_words, cfg.max_words), ("negative", "positive")
        )
        return generated(0, cfg.train_size), generated(1, cfg.test_size)
    train = load_labelled(cfg.train, "train", cfg.text_column, cfg.label_column)
    test_source, test_split = (cfg.test, "train") if cfg.test else (cfg.train, "test")
    return train, load_labelled(test_source, test_split, cfg.text_column, cfg.label_column, train.class_names)


def encode(vocab, texts, max_len):
    """``(ids [N, T], lengths [N])``; an empty review becomes one ``<unk>``."""
    ids = [vocab.encode(t)[:max_len] for t in texts]
    return pad_sequences([s if len(s) else [vocab.unk_id] for s in ids])


def main(argv=None):
    cfg = setup(parse_config(Config, argv, __doc__))
    run = RunDir(cfg)
    t0 = time.perf_counter()
    (train_texts, train_labels, class_names), (test_texts, test_labels, _) = load_data(cfg)
    vocab = WordVocab.build(train_texts, min_freq=cfg.min_freq, lowercase=True)
    num_classes = len(class_names)
    if num_classes < 2:
        raise InputError(
            f"{cfg.train or 'the training data'} has one class only ({class_names[0]!r}): nothing to classify"
        )
    if cfg.train and not cfg.test and looks_local(cfg.train):  # a file has no test split: it would test on itself
        raise ConfigError(
            f"--train {cfg.train} is a file, with no test split: give --test (a file of held-out reviews)"
        )
    train_ids, train_lengths = encode(vocab, train_texts, cfg.max_len)
    test_ids, test_lengths = encode(vocab, test_texts, cfg.max_len)

    def batches(step, examples):  # a pure function of the step; leading axis: one seed
        idx = np.random.default_rng((cfg.seed, step)).integers(0, len(train_ids), cfg.batch_size)[examples]
        return {"ids": train_ids[idx][None], "lengths": train_lengths[idx][None], "labels": train_labels[idx][None]}

    results = {
        "vocab_size": vocab.size,
        "train_examples": len(train_ids),
        "test_examples": len(test_ids),
        "class_names": list(class_names),  # class id -> label in the data
        "pooling": cfg.pooling,
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        "models": {},
    }
    for direction in cfg.directions:
        layer = RNN(make_cell(cfg.cell, cfg.hidden), bidirectional=(direction == "bi"))
        model = SequenceClassifier(vocab.size, cfg.embed, layer, num_classes, cfg.pooling)

        def loss_fn(params, batch, key, model=model):
            logits = model.apply(params, batch["ids"], batch["lengths"])
            loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]))
            return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["labels"])}

        state = train_seeds(
            run,
            f"{direction}-{cfg.cell}",
            cfg,
            init_fn=lambda k, model=model: model.init(k, train_ids[:1], train_lengths[:1]),
            loss_fn=loss_fn,
            optimizer=make_optimizer(OptimConfig("adam", cfg.learning_rate, clip_norm=cfg.clip_norm), cfg.steps),
            batch_fn=batches,
            batch_size=cfg.batch_size,
            init_keys=jax.random.key(cfg.seed)[None],
            vocab=vocab,
        )
        params = jax.tree.map(lambda a: a[0], state.params)
        predict = jax.jit(lambda ids, lengths, model=model: jnp.argmax(model.apply(params, ids, lengths), -1))
        predictions = np.concatenate(
            [predict(test_ids[i : i + 256], test_lengths[i : i + 256]) for i in range(0, len(test_ids), 256)]
        )
        results["models"][direction] = {
            "accuracy": float(np.mean(predictions == test_labels)),
            "confusion_matrix": confusion_matrix(test_labels, predictions, num_classes).tolist(),
        }
        if not cfg.quiet:
            print(f"{direction}-{cfg.cell}: test accuracy {results['models'][direction]['accuracy']:.3f}")
    results["runtime_s"] = time.perf_counter() - t0
    run.write_results(results)
    if not run.writes:  # the figure reads metrics.jsonl, which process 0 alone writes
        return results

    fig, axes = plt.subplots(
        1, 1 + len(cfg.directions), figsize=(5 + 3.2 * len(cfg.directions), 3.8), constrained_layout=True
    )
    curves = {}
    for direction in cfg.directions:
        curves[f"{direction}-{cfg.cell}"] = run.curve(f"{direction}-{cfg.cell}")
    learning_curves(curves, title="training loss", ylabel="cross-entropy", ax=axes[0])
    for ax, direction in zip(axes[1:], cfg.directions):
        m = np.array(results["models"][direction]["confusion_matrix"])
        ax.imshow(m, cmap="Blues")
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, str(v), ha="center", va="center")
        ax.set_xticks(range(num_classes), class_names, rotation=30 if num_classes > 3 else 0)
        ax.set_yticks(range(num_classes), class_names)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(f"{direction}-{cfg.cell}: accuracy {results['models'][direction]['accuracy']:.3f}")
    fig.suptitle(
        f"Sentiment, {cfg.cell.upper()} {cfg.hidden} units, {cfg.pooling} pooling, {len(train_ids)} training reviews",
        fontsize=10,
    )
    run.save_figure(fig, "sentiment")
    return results


if __name__ == "__main__":
    cli(main)
