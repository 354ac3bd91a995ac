"""Text generation: a character (or word) language model, trained from scratch, then sampled.

    Embed -> RNN/LSTM/GRU stack -> Dense over the vocabulary, trained on next-token
    cross-entropy over random windows of the text.

    python experiments/text_generation.py                         # offline default corpus, GRU 256
    python experiments/text_generation.py --source my.txt         # a file, a folder of .txt, or a Hub dataset name
    python experiments/text_generation.py --mode sample --out runs/text_generation \\
        --prime "The " --temperature 0.8 --top-k 20 --length 400

Reports validation loss in nats and bits per character (perplexity for words)
next to the unigram entropy of the training text: a model that learned nothing
about context scores the unigram entropy.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rnnlab import RNN
from rnnlab.checkpoint import Checkpointer
from rnnlab.data import (
    CharVocab,
    WordVocab,
    default_corpus,
    load_text,
    random_windows,
    sequential_windows,
    vocab_from_dict,
)
from rnnlab.data.files import check_utf8
from rnnlab.decode import sample_text
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
from rnnlab.linen import LanguageModel
from rnnlab.plots import learning_curves
from rnnlab.sweep import training_bytes
from rnnlab.train import OptimConfig, init_state, make_optimizer
from rnnlab.validation import InputError
from rnnlab.zoo import CELLS, make_cell

# the flags that shape training: --mode sample reads them from the trained run instead
TRAINING = ("source", "level", "min_freq", "cell", "hidden", "layers", "dropout", "embed", "seq_len", "batch_size")
TRAINING += ("steps", "learning_rate", "clip_norm", "val_fraction", "checkpoint_every", "log_every", "resume")


@dataclasses.dataclass
class Config(BaseConfig):
    out: str = "runs/text_generation"
    mode: str = option("train", choices=("train", "sample"))
    source: str = ""  # empty: the offline default corpus (Python's pydoc topics)
    level: str = option("char", choices=("char", "word"))
    min_freq: int = option(2, ge=1)  # word level: rarer words become <unk>
    cell: str = option("gru", choices=CELLS)
    hidden: int = option(256, ge=1)
    layers: int = option(1, ge=1)
    dropout: float = option(0.0, ge=0.0, lt=1.0)
    embed: int = option(64, ge=1)
    seq_len: int = option(100, ge=1)
    batch_size: int = option(32, ge=1)
    steps: int = option(2000, ge=1)
    learning_rate: float = option(2e-3, gt=0.0)
    clip_norm: float = option(1.0, ge=0.0)  # 0: no clipping
    val_fraction: float = option(0.05, gt=0.0, lt=1.0)
    checkpoint_every: int = option(500, ge=0)
    log_every: int = option(25, ge=1)
    # sampling
    prime: str = "The "
    prime_file: str = ""
    temperature: float = option(0.8, ge=0.0)  # 0: always the most likely token
    top_k: int = option(0, ge=0)  # 0: every token
    length: int = option(300, ge=1)

    def apply_quick(self):
        self.hidden, self.embed, self.seq_len, self.batch_size = 64, 16, 50, 16
        self.steps, self.checkpoint_every, self.log_every, self.length = 200, 100, 10, 100

    def check(self):
        super().check()
        sampling = "--mode sample uses the trained run's settings (its config.json in --out)"
        rules = {name: (self.mode == "train", sampling) for name in TRAINING}
        rules["prime_file"] = (self.mode == "sample", "it is read by --mode sample; training samples from --prime")
        rules["min_freq"] = (self.level == "word", "--level is char (every character is kept)")
        rules["prime"] = ("prime_file" not in self.explicit_flags, "--prime-file gives the prime")
        refuse_unused(self, rules)

    def memory_needs(self):
        width = self.embed + self.hidden * self.layers
        return [
            (
                ("batch_size", "seq_len", "hidden", "layers", "embed"),
                "a training batch",
                training_bytes(1, self.batch_size, self.seq_len, 0, width),
            ),
            (
                ("length", "hidden", "layers"),
                "the sample",
                training_bytes(1, 1, self.length, 0, self.hidden * self.layers),
            ),
        ]


def build_vocab(cfg, text):
    return CharVocab.build(text) if cfg.level == "char" else WordVocab.build(text, min_freq=cfg.min_freq)


def build_model(cfg, vocab):
    layer = RNN(make_cell(cfg.cell, cfg.hidden), num_layers=cfg.layers, dropout=cfg.dropout)
    return LanguageModel(vocab.size, cfg.embed, layer)


def token_loss(model, params, batch, key=None):
    """Mean next-token cross-entropy in nats."""
    deterministic = key is None
    rngs = None if deterministic else {"dropout": key}
    logits, _ = model.apply(params, batch["inputs"], deterministic=deterministic, rngs=rngs)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"]))


def unigram_entropy(ids, vocab_size) -> float:
    p = np.bincount(ids, minlength=vocab_size) / len(ids)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def train(cfg: Config):
    run = RunDir(cfg)
    t0 = time.perf_counter()
    text = load_text(cfg.source) if cfg.source else default_corpus()
    cut = int(len(text) * (1 - cfg.val_fraction))
    vocab = build_vocab(cfg, text[:cut])
    # words never seen in training become <unk>; characters never seen are dropped
    encode = vocab.encode if cfg.level == "word" else functools.partial(vocab.encode, skip_unknown=True)
    train_ids, val_ids = encode(text[:cut]), encode(text[cut:])
    model = build_model(cfg, vocab)
    optimizer = make_optimizer(OptimConfig("adam", cfg.learning_rate, clip_norm=cfg.clip_norm), cfg.steps)
    batches = lambda step, examples: jax.tree.map(  # leading axis: one seed
        lambda a: a[None], random_windows(train_ids, cfg.batch_size, cfg.seq_len, (cfg.seed, step), examples)
    )
    dummy = jnp.zeros((1, cfg.seq_len), jnp.int32)
    state = train_seeds(
        run,
        "lm",
        cfg,
        init_fn=lambda k: model.init(k, dummy),
        loss_fn=lambda params, batch, key: (token_loss(model, params, batch, key if cfg.dropout else None), {}),
        optimizer=optimizer,
        batch_fn=batches,
        batch_size=cfg.batch_size,
        init_keys=jax.random.key(cfg.seed)[None],
        vocab=vocab,
    )
    params = jax.tree.map(lambda a: a[0], state.params)

    val = sequential_windows(val_ids, cfg.seq_len)
    eval_loss = jax.jit(lambda p, b: token_loss(model, p, b))
    chunks = range(0, len(val["inputs"]), 64)
    val_nats = float(np.mean([eval_loss(params, {k: v[i : i + 64] for k, v in val.items()}) for i in chunks]))
    prime_ids = encode(cfg.prime)
    sample = vocab.decode(
        sample_text(
            model, params, prime_ids, cfg.length, jax.random.key(cfg.seed), temperature=cfg.temperature, top_k=cfg.top_k
        )
    )
    results = {
        "level": cfg.level,
        "vocab_size": vocab.size,
        "train_tokens": len(train_ids),
        "val_tokens": len(val_ids),
        "val_loss_nats": val_nats,
        "unigram_entropy_nats": unigram_entropy(train_ids, vocab.size),
        "sample_prime": cfg.prime,
        "sample": sample,
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        "runtime_s": time.perf_counter() - t0,
    }
    if cfg.level == "char":
        results["val_bits_per_char"] = val_nats / math.log(2)
    else:
        results["val_perplexity"] = math.exp(val_nats)
    run.write_results(results)
    if not run.writes:  # the figure reads metrics.jsonl, which process 0 alone writes
        return results
    fig = learning_curves(
        {cfg.cell: run.curve("lm")},
        baseline=results["unigram_entropy_nats"],
        baseline_label="unigram entropy",
        ylabel="training cross-entropy, nats per token",
        title=f"{cfg.level}-level LM: {cfg.layers}x{cfg.cell.upper()} {cfg.hidden}, "
        f"seq {cfg.seq_len}, batch {cfg.batch_size}, Adam {cfg.learning_rate:g}, "
        f"{vocab.size} tokens\nvalidation {val_nats:.3f} nats/token",
    )
    run.save_figure(fig, "learning_curve")
    if not cfg.quiet:
        print(
            f"validation {val_nats:.3f} nats/token (unigram entropy {results['unigram_entropy_nats']:.3f}); "
            f"{results['runtime_s']:.0f} s\n--- sample ---\n{cfg.prime}{sample}"
        )
    return results


def sample(cfg: Config):
    """Load the run in ``--out`` (its config, vocabulary and last checkpoint) and generate."""
    out = pathlib.Path(cfg.out)
    if not (out / "config.json").exists():
        raise FileNotFoundError(f"no trained run in {out}: train first (--mode train --out {out})")
    saved = Config(**json.loads((out / "config.json").read_text()))
    checkpointer = Checkpointer(out / "checkpoints" / "lm")
    meta = checkpointer.read_meta()
    vocab = vocab_from_dict(meta["vocab"])
    model = build_model(saved, vocab)
    optimizer = make_optimizer(OptimConfig("adam", saved.learning_rate, clip_norm=saved.clip_norm), saved.steps)
    target = jax.vmap(lambda k: init_state(optimizer, model.init(k, jnp.zeros((1, 1), jnp.int32)), k))(
        jax.random.key(0)[None]
    )
    found = checkpointer.restore_latest(target)
    checkpointer.close()
    if found is None:
        raise InputError(f"no readable checkpoint in {checkpointer.directory}")
    params = jax.tree.map(lambda a: a[0], found[1].params)
    if cfg.prime_file:
        check_utf8(pathlib.Path(cfg.prime_file))
    prime = pathlib.Path(cfg.prime_file).read_text(encoding="utf-8") if cfg.prime_file else cfg.prime
    prime_ids = vocab.encode(prime)
    if len(prime_ids) == 0:
        raise ConfigError(f"--prime{'-file' if cfg.prime_file else ''} holds no {saved.level}s to start from")
    if cfg.top_k > vocab.size:
        raise ConfigError(f"--top-k must be <= the vocabulary size {vocab.size}, got {cfg.top_k}")
    ids = sample_text(
        model, params, prime_ids, cfg.length, jax.random.key(cfg.seed), temperature=cfg.temperature, top_k=cfg.top_k
    )
    text = vocab.decode(ids)
    print(prime + (" " if saved.level == "word" else "") + text)
    return text


def main(argv=None):
    cfg = setup(parse_config(Config, argv, __doc__))
    return train(cfg) if cfg.mode == "train" else sample(cfg)


if __name__ == "__main__":
    cli(main)
