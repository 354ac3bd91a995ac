"""Data: task generators against their published baselines, windows against loops,
vocabularies, loading through `datasets` from files the tests write."""

import math

import numpy as np
import pytest

from rnnlab.data import (
    CharVocab,
    WordVocab,
    adding_problem,
    adding_problem_hs97,
    check_token_ids,
    copy_memory,
    copy_memory_baseline,
    default_corpus,
    load_csv_column,
    load_text,
    mackey_glass,
    make_windows,
    pad_sequences,
    random_windows,
    seeded_batches,
    sequential_windows,
    sine_mixture,
    split_by_time,
    standardize,
    vocab_from_dict,
)

# -- synthetic tasks ----------------------------------------------------------


def test_adding_problem_predicting_one_scores_one_sixth():
    batch = adding_problem(0, 20_000, 50)
    assert batch["x"].shape == (20_000, 50, 2)
    assert float(np.mean((1.0 - batch["y"]) ** 2)) == pytest.approx(1 / 6, abs=0.005)
    markers = np.asarray(batch["x"][..., 1])
    assert np.all(markers[:, :25].sum(1) == 1) and np.all(markers[:, 25:].sum(1) == 1)
    np.testing.assert_allclose(batch["y"], (batch["x"][..., 0] * batch["x"][..., 1]).sum(1), rtol=1e-6)


def test_adding_problem_hs97_follows_the_1997_protocol():
    T = 100
    b = adding_problem_hs97(1, 2000, T)
    x, y, lengths = np.asarray(b["x"]), np.asarray(b["y"]), np.asarray(b["lengths"])
    assert x.shape == (2000, 110, 2) and lengths.min() >= T and lengths.max() <= 110
    for i in range(50):
        marker = x[i, : lengths[i], 1]
        marked = np.flatnonzero(marker == 1.0)
        assert len(marked) == 2 and marked[0] < 10 and marked[1] < T // 2 - 1
        assert marker[-1] == -1.0 and (marker[0] == -1.0 or 0 in marked)
        assert np.all(x[i, lengths[i] :] == 0.0)
        assert y[i] == pytest.approx(0.5 + x[i, marked, 0].sum() / 4, abs=1e-6)
    assert y.min() >= 0.0 and y.max() <= 1.0


def test_copy_memory_layout_and_memoryless_baseline():
    T = 50
    b = copy_memory(2, 500, T)
    tokens, targets = np.asarray(b["tokens"]), np.asarray(b["targets"])
    assert tokens.shape == targets.shape == (500, T + 20)
    np.testing.assert_array_equal(targets[:, -10:], tokens[:, :10])
    assert np.all(tokens[:, T + 9] == 9) and np.all((tokens[:, :10] >= 1) & (tokens[:, :10] <= 8))
    # The best memoryless predictor: blank where targets are always blank, uniform over 8 after.
    p = np.where(np.arange(T + 20)[None, :] < T + 10, 1.0, 1 / 8)
    prob_of_target = np.where(targets == 0, p, np.where(np.arange(T + 20) >= T + 10, 1 / 8, 0.0))
    assert np.mean(-np.log(prob_of_target)) == pytest.approx(copy_memory_baseline(T))
    assert copy_memory_baseline(T) == pytest.approx(10 * math.log(8) / (T + 20))


def test_generators_are_deterministic_given_the_seed():
    a, b = adding_problem((3, 7), 4, 10), adding_problem((3, 7), 4, 10)
    np.testing.assert_array_equal(a["x"], b["x"])
    assert not np.array_equal(a["x"], adding_problem((3, 8), 4, 10)["x"])
    batches = seeded_batches(adding_problem, 0, 3, 4, 10)
    assert batches(5)["x"].shape == (3, 4, 10, 2) and batches(5)["x"].dtype == np.float32
    np.testing.assert_array_equal(batches(5)["y"], batches(5)["y"])
    assert not np.array_equal(batches(5)["x"][0], batches(5)["x"][1])  # each seed its own data


# -- time series --------------------------------------------------------------


def test_mackey_glass_is_the_delay_equation():
    series = mackey_glass(1000)
    assert series.shape == (1000,) and 0.2 < series.min() and series.max() < 1.5
    # Chaotic, not periodic or settled: the sampled series never repeats a window.
    assert np.std(series[-200:]) > 0.1
    # One unit of time per sample: the Euler path at dt=0.1 agrees with dt=0.01 early on.
    fine = mackey_glass(50, dt=0.01, sample_every=100, warmup=0)
    coarse = mackey_glass(50, dt=0.1, sample_every=10, warmup=0)
    np.testing.assert_allclose(coarse[:30], fine[:30], atol=0.02)


def test_windows_match_a_loop_and_the_split_is_by_time():
    series = np.arange(20, dtype=np.float32)
    x, y = make_windows(series, window=5, horizon=2)
    for i in range(len(x)):
        np.testing.assert_array_equal(x[i, :, 0], series[i : i + 5])
        np.testing.assert_array_equal(y[i], series[i + 5 : i + 7])
    assert len(x) == 14
    past, future = split_by_time(series, 0.25)
    assert past[-1] < future[0] and len(future) == 5
    mean, std, past_s, future_s = standardize(past, future)
    assert mean == pytest.approx(past.mean()) and past_s.mean() == pytest.approx(0, abs=1e-6)
    with pytest.raises(ValueError, match="has no window of 30"):
        make_windows(series, 30)


def test_sine_mixture_is_seeded():
    np.testing.assert_array_equal(sine_mixture(100, seed=1), sine_mixture(100, seed=1))
    assert not np.array_equal(sine_mixture(100, seed=1), sine_mixture(100, seed=2))


def test_csv_column_loads_through_datasets(tmp_path):
    path = tmp_path / "prices.csv"
    close = np.round(100 + np.cumsum(np.random.default_rng(0).normal(size=30)), 3)
    path.write_text("Date,Close,Note\n" + "".join(f"2024-01-{i + 1:02d},{c},x\n" for i, c in enumerate(close)))
    np.testing.assert_allclose(load_csv_column(path, "Close"), close, rtol=1e-6)
    with pytest.raises(ValueError, match=r"has no column 'Open'; columns are \['Date', 'Close', 'Note'\]"):
        load_csv_column(path, "Open")
    with pytest.raises(ValueError, match="row 1, column 'Note' is not a number: 'x'"):
        load_csv_column(path, "Note")


# -- text ---------------------------------------------------------------------

TEXT = "To be, or not to be:\nthat is the question.\n\nΩ ok\n"


def test_char_vocab_round_trip_keeps_line_breaks_and_unicode():
    vocab = CharVocab.build(TEXT)
    ids = vocab.encode(TEXT)
    assert ids.dtype == np.int32 and "\n" in vocab.tokens and "Ω" in vocab.tokens
    assert vocab.decode(ids) == TEXT
    assert vocab_from_dict(vocab.to_dict()) == vocab
    with pytest.raises(ValueError, match="characters not in the vocabulary: 'Z'"):
        vocab.encode("Zoo")
    np.testing.assert_array_equal(vocab.encode("Zoo", skip_unknown=True), vocab.encode("oo"))


def test_word_vocab_split_min_freq_and_unknowns():
    vocab = WordVocab.build(["the cat sat", "the dog sat", "a bird"], min_freq=2)
    assert vocab.tokens == ("<pad>", "<unk>", "sat", "the")
    assert vocab.word_to_index["the"] == 3
    np.testing.assert_array_equal(vocab.encode("the bird sat"), [3, 1, 2])
    assert vocab.decode([3, 1, 2]) == "the <unk> sat"
    assert vocab_from_dict(vocab.to_dict()) == vocab


def test_out_of_range_token_ids_are_an_error_not_a_silent_clamp():
    vocab = CharVocab.build("abc")
    with pytest.raises(ValueError, match=r"must lie in 0..2 \(vocabulary size 3\); found 3 at index 1"):
        vocab.decode([0, 3])
    with pytest.raises(ValueError, match=r"found -1 at index \(1, 0\)"):
        check_token_ids(np.array([[0, 1], [-1, 2]]), 3)
    with pytest.raises(TypeError, match="must be integers"):
        check_token_ids(np.array([0.5]), 3)


def test_load_text_from_file_and_folder_keeps_line_breaks(tmp_path):
    (tmp_path / "a.txt").write_text(TEXT)
    (tmp_path / "b.txt").write_text("second file\nends here\n")
    assert load_text(tmp_path / "a.txt") == TEXT
    assert load_text(tmp_path) == TEXT + "second file\nends here\n"
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        load_text("./does-not-exist.txt")


def test_default_corpus_is_offline_english():
    text = default_corpus()
    assert len(text) > 200_000 and "\n" in text and "the" in text.split()


def test_padding_and_windows():
    ids, lengths = pad_sequences([[5, 6, 7], [8]], pad_id=0)
    np.testing.assert_array_equal(ids, [[5, 6, 7], [8, 0, 0]])
    np.testing.assert_array_equal(lengths, [3, 1])
    with pytest.raises(ValueError, match="no empty sequence"):
        pad_sequences([[1], []])
    stream = np.arange(100, dtype=np.int32)
    batch = random_windows(stream, 8, 10, (0, 1))
    np.testing.assert_array_equal(batch["targets"], batch["inputs"] + 1)
    val = sequential_windows(stream, 10)
    assert val["inputs"].shape == (9, 10) and val["targets"][-1, -1] == 90
