"""What every script in ``experiments/`` shares, one module per concern:

  ``cli``     config dataclasses as flags (``parse_config``), ``setup`` (multi-process, compile
              cache), one-line errors and Ctrl-C (``cli``), console summaries (``readable``);
  ``models``  the per-model flags (``PerModelConfig``) and ``ModelSpec``;
  ``rundir``  the output folder, its lock, checkpoints' metadata and ``resume``;
  ``runner``  ``train_sweep`` and ``train_seeds``;
  ``datasets`` a fixed dataset cut by ``--train-size``, ``--test-size``, ``--validation-size``.

The conventions:

* A config dataclass is the CLI: every field is a ``--flag`` (``--help`` lists
  them with defaults); every config also has ``--out``, ``--seed``,
  ``--steps``, ``--quick``, ``--resume``, ``--checkpoint-every``, ``--quiet``.
* The output folder holds ``config.json``, ``metrics.jsonl`` (one JSON object
  per logged step: ``step``, ``loss``, and ``model`` when a script trains
  several), ``results.json`` and PNG figures, plus ``checkpoints/``.
* ``--resume`` continues from the last good checkpoint exactly; without it an
  output folder that already holds a run is never overwritten.
* ``--coordinator-address HOST:PORT --num-processes N --process-id I`` join a
  multi-process run (``jax.distributed.initialize``; read from
  ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID`` when
  absent).  Only process 0 writes the output folder.
* ``--compile-cache DIR`` keeps JAX's persistent compilation cache there
  (default ``~/.cache/rnnlab/jax_compile_cache``; ``off`` disables it).
* Every numeric field declares its valid range where it is defined
  (``option(100, ge=1)``); ``parse_config`` checks them all, and ``Config.check``
  any rule between fields.  A list flag takes each value once: a duplicate
  (``--learning-rate 1e-3 1e-3``) is refused, not trained and counted twice.  A bad value is reported the way argparse reports
  one: ``error: --steps must be >= 1, got -5``, exit status 2.  So is every
  user error a script meets later (a missing file or column, bad data):
  ``cli(main)`` prints it in one line and exits with status 2; a traceback is
  for bugs, or for any error with ``--debug``.
"""

from rnnlab.experiment.cli import (
    SEED_MAX,
    USER_ERRORS,
    BaseConfig,
    ConfigError,
    Interrupted,
    check_fields,
    check_memory,
    cli,
    config_dict,
    flag,
    option,
    parse_config,
    readable,
    refuse_inapplicable,
    refuse_unused,
    setup,
)
from rnnlab.experiment.datasets import cut_splits
from rnnlab.experiment.models import (
    CLIP_RULES,
    ModelSpec,
    PerModelConfig,
    cell_options,
    check_per_model,
    clip_of,
    clip_rule,
    clip_written,
    execution_path,
    model_clip,
    model_hidden,
    model_path,
    model_spec,
    optimizer_rules,
    per_model,
    positive_int,
)
from rnnlab.experiment.rundir import (
    RESUMABLE_FIELDS,
    RunDir,
    RunLockedError,
    check_compatible,
    checkpoint_meta,
    lock_folder,
    resume,
    write_json,
)
from rnnlab.experiment.runner import train_seeds, train_sweep

__all__ = [
    "CLIP_RULES",
    "RESUMABLE_FIELDS",
    "SEED_MAX",
    "USER_ERRORS",
    "BaseConfig",
    "ConfigError",
    "Interrupted",
    "ModelSpec",
    "PerModelConfig",
    "RunDir",
    "RunLockedError",
    "cell_options",
    "check_compatible",
    "check_fields",
    "check_memory",
    "check_per_model",
    "checkpoint_meta",
    "cli",
    "clip_of",
    "clip_rule",
    "clip_written",
    "config_dict",
    "cut_splits",
    "execution_path",
    "flag",
    "lock_folder",
    "model_clip",
    "model_hidden",
    "model_path",
    "model_spec",
    "optimizer_rules",
    "option",
    "parse_config",
    "per_model",
    "positive_int",
    "readable",
    "refuse_inapplicable",
    "refuse_unused",
    "resume",
    "setup",
    "train_seeds",
    "train_sweep",
    "write_json",
]
