"""Sequence to sequence: an encoder RNN reads the source, its final state starts a
decoder RNN that writes the target (the seeds' machine-translation shape).

Training uses teacher forcing (the decoder reads the true previous character);
evaluation decodes greedily and with beam search, and reports exact-match
accuracy and character error rate on held-out pairs.

    python experiments/seq2seq.py                                  # "12+345" -> "357" style addition
    python experiments/seq2seq.py --pairs fr_en.csv --source-column fr --target-column en
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rnnlab import RNN
from rnnlab.data import CharVocab, pad_sequences
from rnnlab.data.synthetic import addition_pairs
from rnnlab.data.text import load_pairs
from rnnlab.decode import beam_search, greedy_decode
from rnnlab.experiment import BaseConfig, RunDir, cli, option, parse_config, readable, refuse_unused, setup, train_seeds
from rnnlab.linen import Seq2Seq
from rnnlab.metrics import character_error_rate, exact_match
from rnnlab.plots import learning_curves
from rnnlab.sweep import training_bytes
from rnnlab.train import OptimConfig, make_optimizer
from rnnlab.validation import InputError
from rnnlab.zoo import CELLS, make_cell

PAD, START, END = "<pad>", "<s>", "</s>"


@dataclasses.dataclass
class Config(BaseConfig):
    out: str = "runs/seq2seq"
    pairs: str = ""  # empty: generated addition; else a two-column CSV
    source_column: str = "source"
    target_column: str = "target"
    digits: int = option(2, ge=1, le=9)
    num_pairs: int = option(8000, ge=2)  # generated addition
    val_fraction: float = option(0.1, gt=0.0, lt=1.0)  # held out for evaluation, at least one pair
    cell: str = option("lstm", choices=CELLS)
    hidden: int = option(128, ge=1)
    layers: int = option(1, ge=1)
    embed: int = option(32, ge=1)
    batch_size: int = option(128, ge=1)
    steps: int = option(3000, ge=1)
    learning_rate: float = option(3e-3, gt=0.0)
    clip_norm: float = option(1.0, ge=0.0)  # 0: no clipping
    beam: int = option(4, ge=1)
    beam_examples: int = option(200, ge=0)
    log_every: int = option(25, ge=1)

    def apply_quick(self):
        self.steps, self.hidden, self.num_pairs, self.val_fraction = 600, 64, 4000, 0.075
        self.beam_examples, self.checkpoint_every = 50, 200

    def check(self):
        super().check()
        generated = (not self.pairs, "--pairs gives the pairs")
        from_file = (bool(self.pairs), "it names a column of --pairs; give --pairs too")
        rules = {"digits": generated, "num_pairs": generated, "source_column": from_file, "target_column": from_file}
        refuse_unused(self, rules)

    def memory_needs(self):
        """The generated pairs (``a+b`` and its sum: about 4 * digits characters each), a training
        batch of them, and beam search's ``beam x beam_examples`` hypotheses."""
        chars = 4 * self.digits + 4
        pairs = 0 if self.pairs else self.num_pairs * (2 * chars * 4 + 2 * 64)  # ids, and the strings themselves
        width = self.embed + self.hidden * self.layers
        batch = training_bytes(1, max(self.batch_size, self.beam * self.beam_examples), chars, 0, 2 * width)
        return [(("num_pairs", "digits", "batch_size", "hidden", "beam", "beam_examples"), "the pairs", pairs + batch)]


def split_pairs(pairs, val_fraction: float, seed: int, source) -> tuple[list, list]:
    """``(train, val)``: a shuffled ``val_fraction`` of the pairs, at least one, held out;
    at least one pair must be left to train on."""
    num_val = max(1, round(len(pairs) * val_fraction))
    if len(pairs) - num_val < 1:
        raise InputError(
            f"{source} has {len(pairs)} pair(s): too few to hold out {num_val} for validation "
            f"(--val-fraction {val_fraction}) and train on the rest"
        )
    order = np.random.default_rng(seed).permutation(len(pairs))
    return [pairs[i] for i in order[num_val:]], [pairs[i] for i in order[:num_val]]


def encode_pairs(pairs, src_vocab, tgt_vocab, skip_unknown: bool = False):
    """Padded source ids with lengths; decoder inputs ``<s> y`` and targets ``y </s>`` with a mask."""
    src, src_lengths = pad_sequences([src_vocab.encode(s, skip_unknown) for s, _ in pairs])
    tgt = [tgt_vocab.encode(t, skip_unknown) for _, t in pairs]
    tgt_in, _ = pad_sequences([np.r_[tgt_vocab.id(START), y] for y in tgt])
    tgt_out, lengths = pad_sequences([np.r_[y, tgt_vocab.id(END)] for y in tgt])
    mask = np.arange(tgt_out.shape[1])[None, :] < lengths[:, None]
    return {"src": src, "src_lengths": src_lengths, "tgt_in": tgt_in, "tgt_out": tgt_out, "mask": mask}


def strip_end(ids, end_id):
    ids = list(ids)
    return ids[: ids.index(end_id)] if end_id in ids else ids


def main(argv=None):
    cfg = setup(parse_config(Config, argv, __doc__))
    run = RunDir(cfg)
    t0 = time.perf_counter()
    pairs = (
        load_pairs(cfg.pairs, cfg.source_column, cfg.target_column)
        if cfg.pairs
        else addition_pairs(cfg.seed, cfg.num_pairs, cfg.digits)
    )
    train, val = split_pairs(pairs, cfg.val_fraction, cfg.seed, cfg.pairs or "the generated pairs")
    src_vocab = CharVocab.build("".join(s for s, _ in train), specials=(PAD,))
    tgt_vocab = CharVocab.build("".join(t for _, t in train), specials=(PAD, START, END))
    data = encode_pairs(train, src_vocab, tgt_vocab)
    # characters that no training pair has cannot be read or written: dropped from the inputs
    val_data = encode_pairs(val, src_vocab, tgt_vocab, skip_unknown=True)

    layer = RNN(make_cell(cfg.cell, cfg.hidden), num_layers=cfg.layers)
    model = Seq2Seq(src_vocab.size, tgt_vocab.size, cfg.embed, layer, layer)

    def loss_fn(params, batch, key):
        logits = model.apply(params, batch["src"], batch["src_lengths"], batch["tgt_in"])
        token_loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["tgt_out"])
        return jnp.sum(token_loss * batch["mask"]) / jnp.sum(batch["mask"]), {}

    def batches(step, examples):  # a pure function of the step; leading axis: one seed
        idx = np.random.default_rng((cfg.seed, step)).integers(0, len(train), cfg.batch_size)[examples]
        return {k: v[idx][None] for k, v in data.items()}

    state = train_seeds(
        run,
        f"{cfg.cell}",
        cfg,
        init_fn=lambda k: model.init(k, data["src"][:1], data["src_lengths"][:1], data["tgt_in"][:1]),
        loss_fn=loss_fn,
        optimizer=make_optimizer(OptimConfig("adam", cfg.learning_rate, clip_norm=cfg.clip_norm), cfg.steps),
        batch_fn=batches,
        batch_size=cfg.batch_size,
        init_keys=jax.random.key(cfg.seed)[None],
        vocab=tgt_vocab,
    )
    params = jax.tree.map(lambda a: a[0], state.params)

    end_id, max_len = tgt_vocab.id(END), val_data["tgt_out"].shape[1] + 2
    greedy_ids = greedy_decode(
        model, params, val_data["src"], val_data["src_lengths"], start_id=tgt_vocab.id(START), max_len=max_len
    )
    greedy = [tgt_vocab.decode(strip_end(row, end_id)) for row in greedy_ids]
    references = [t for _, t in val]
    n_beam = min(cfg.beam_examples, len(val))
    beamed = [
        tgt_vocab.decode(
            beam_search(
                model,
                params,
                val_data["src"][i],
                int(val_data["src_lengths"][i]),
                start_id=tgt_vocab.id(START),
                end_id=end_id,
                max_len=max_len,
                beam=cfg.beam,
            )[0]
        )
        for i in range(n_beam)
    ]
    results = {
        "train_pairs": len(train),
        "val_pairs": len(val),
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        "greedy_exact_match": exact_match(greedy, references),
        "greedy_cer": character_error_rate(greedy, references),
        "beam": cfg.beam,
        "beam_examples": n_beam,
        "beam_exact_match": exact_match(beamed, references[:n_beam]),
        "greedy_exact_match_same_examples": exact_match(greedy[:n_beam], references[:n_beam]),
        "beam_cer": character_error_rate(beamed, references[:n_beam]),
        "examples": [{"source": s, "target": t, "greedy": g} for (s, t), g in list(zip(val, greedy))[:10]],
        "runtime_s": time.perf_counter() - t0,
    }
    run.write_results(results)
    if not run.writes:  # the figure reads metrics.jsonl, which process 0 alone writes
        return results
    fig = learning_curves(
        {cfg.cell: run.curve(cfg.cell)},
        ylabel="teacher-forced cross-entropy per target token",
        title=f"seq2seq {'addition' if not cfg.pairs else cfg.pairs}: {cfg.layers}x{cfg.cell.upper()} "
        f"{cfg.hidden}, {len(train)} pairs; val exact match {results['greedy_exact_match']:.3f} "
        f"(greedy), {results['beam_exact_match']:.3f} (beam {cfg.beam})",
    )
    run.save_figure(fig, "learning_curve")
    if not cfg.quiet:
        print(readable({k: v for k, v in results.items() if k != "examples"}))
    return results


if __name__ == "__main__":
    cli(main)
