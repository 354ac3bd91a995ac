"""Data: synthetic long-range tasks, time series and text (see each module)."""

from rnnlab.data.synthetic import (
    TASKS,
    adding_problem,
    adding_problem_baseline_mse,
    adding_problem_hs97,
    copy_memory,
    copy_memory_baseline,
    seeded_batches,
)
from rnnlab.data.text import (
    CharVocab,
    WordVocab,
    check_token_ids,
    default_corpus,
    load_text,
    pad_sequences,
    random_windows,
    sequential_windows,
    vocab_from_dict,
)
from rnnlab.data.timeseries import (
    load_csv_column,
    load_csv_series,
    mackey_glass,
    make_windows,
    sine_mixture,
    split_by_time,
    standardize,
)
