"""The training runner every research script uses: one model's sweep points (or seeds) side by
side in one compiled program, with the run folder's checkpoints, resumption, log and Ctrl-C."""

from __future__ import annotations

import jax

from rnnlab import sweep as sweeps
from rnnlab.checkpoint import Checkpointer
from rnnlab.experiment.cli import PROGRESS, Interrupted
from rnnlab.experiment.rundir import RunDir, checkpoint_meta, resume


def train_sweep(
    run: RunDir,
    name: str,
    cfg,
    sweep: sweeps.Sweep,
    *,
    loss_fn,
    optimizer,
    batch_fn,
    init_keys,
    init_fn=None,
    params=None,
    hyperparameters=(),
    num_steps=None,
    log_every=None,
    vocab=None,
    tolerate_diverged: bool = False,
    batch_size: int | None = None,
    constrain=None,
    evaluate=None,
    evaluate_every: int = 0,
):
    """Train one model at every point of ``sweep`` side by side (one compiled step, rows
    sharded over every device), with the run's checkpoints, resumption and metrics log
    (records tagged ``"model": name``, per-point values in ``<metric>_per_point``).

    ``params``: host rows ``[S, ...]``, or else ``init_fn(key, point) -> params`` makes them
    (``rnnlab.sweep.init_params``); ``batch_fn(step) -> host batch [S, ...]``, or with ``batch_size``
    ``batch_fn(step, examples) -> [S, len(examples), ...]`` (``rnnlab.sweep.train``); ``hyperparameters``: the columns that set
    optimizer hyperparameters (``learning_rate``, ``clip_norm``, ...).  Returns the final
    ``TrainState`` as host rows ``[S, ...]``.  Raises ``NonFiniteError`` like ``fit``
    (with ``tolerate_diverged``, only once every point has diverged).  ``vocab`` (text
    tasks) is saved in every checkpoint and checked on resume.  ``constrain`` projects the params
    after each update (``rnnlab.linen.constrain_recurrent``: IndRNN's bound).  ``evaluate(state)``
    every ``evaluate_every`` steps adds held-out metrics to that step's record (``rnnlab.train.fit``).
    """
    if params is None:
        params = sweeps.init_params(sweep, init_fn, init_keys)
    state = sweeps.init_states(sweep, optimizer, params, init_keys, hyperparameters)
    checkpointer = Checkpointer(run.checkpoint_dir(name), keep=cfg.keep_checkpoints, every=cfg.checkpoint_every)
    PROGRESS.start(name, checkpointer)  # where a Ctrl-C says the run got to
    log = run.logger(name)

    def log_step(record: dict) -> None:
        PROGRESS.logged = record.get("step", PROGRESS.logged)
        log(record)

    try:
        if cfg.resume:
            state, start = resume(checkpointer, state, cfg, vocab)
            run.truncate_metrics(name, start)
            PROGRESS.logged = start
        final = sweeps.train(
            sweep,
            state,
            loss_fn,
            optimizer,
            batch_fn,
            num_steps=cfg.steps if num_steps is None else num_steps,
            checkpointer=checkpointer,
            log_every=cfg.log_every if log_every is None else log_every,
            log=log_step,
            meta_fn=lambda step: checkpoint_meta(cfg, step, vocab),
            progress="none" if cfg.quiet or not run.writes else "auto",
            desc=name,
            tolerate_diverged=tolerate_diverged,
            constrain=constrain,
            batch_size=batch_size,
            evaluate=evaluate,
            evaluate_every=evaluate_every,
        )
    except KeyboardInterrupt:
        raise Interrupted(PROGRESS.where()) from None
    finally:
        checkpointer.close()
    PROGRESS.finish(name)
    return final


def train_seeds(
    run: RunDir,
    name: str,
    cfg,
    *,
    init_fn,
    loss_fn,
    optimizer,
    batch_fn,
    init_keys,
    batch_size: int,
    num_steps=None,
    log_every=None,
    vocab=None,
):
    """``train_sweep`` over seeds only, data parallel: each step's ``batch_size`` examples are
    split over every device of every process.  ``init_fn(key) -> params``, one key per seed in
    ``init_keys``; ``batch_fn(step, examples: slice) -> batch [S, len(examples), ...]``, called
    by each process for its own examples only."""
    seeds = sweeps.Sweep([{"seed": i} for i in range(len(init_keys))], data=jax.device_count())
    init = jax.jit(init_fn)  # one compile for every seed
    return train_sweep(
        run,
        name,
        cfg,
        seeds,
        init_fn=lambda key, point: init(key),
        loss_fn=loss_fn,
        optimizer=optimizer,
        batch_fn=batch_fn,
        init_keys=init_keys,
        num_steps=num_steps,
        log_every=log_every,
        vocab=vocab,
        batch_size=batch_size,
    )
