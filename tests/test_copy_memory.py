"""The copy-memory experiment: the task, its metrics and memoryless baseline, and the script's results."""

import json
import math

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_script

from rnnlab.data import synthetic
from rnnlab.tasks import Copy


def test_the_memoryless_strategy_scores_the_baseline():
    """Blanks where the target is blank for sure, a uniform guess over the 8 symbols during
    recall: 10 ln 8 / (T + 20) nats per step, through the loss the script trains (``Copy.batch_metrics``)."""
    T = 7
    batch = synthetic.copy_memory(0, 4, T)
    assert batch["tokens"].shape == (4, T + 20)
    np.testing.assert_array_equal(batch["targets"][:, -10:], batch["tokens"][:, :10])
    assert np.all(batch["tokens"][:, 10 + T - 1] == synthetic.COPY_DELIMITER)
    logits = np.full((4, T + 20, Copy.vocab_size), -1e9, np.float32)
    logits[:, : T + 10, synthetic.COPY_BLANK] = 0.0
    logits[:, T + 10 :, 1 : 1 + synthetic.COPY_SYMBOLS] = 0.0
    metrics = Copy.batch_metrics(jnp.asarray(logits), jnp.asarray(batch["targets"]))
    loss = float(metrics["loss"])
    assert math.isclose(loss, synthetic.copy_memory_baseline(T), rel_tol=1e-6)  # float32 loss
    assert math.isclose(loss, 10 * math.log(8) / (T + 20), rel_tol=1e-6)
    # the 10 answer steps alone: ln 8 whatever T, and the argmax of a uniform guess is symbol 1
    assert math.isclose(float(metrics["recall_loss"]), math.log(8), rel_tol=1e-6)
    assert math.isclose(float(metrics["recall_accuracy"]), np.mean(batch["targets"][:, -10:] == 1), rel_tol=1e-6)


def test_recall_metrics_score_only_the_answer_steps():
    """A model that copies perfectly but is wrong on every blank: recall cross-entropy 0 and
    accuracy 1, while the per-step loss is large; one wrong symbol costs 1/(10 B) of accuracy."""
    T, B = 30, 3
    batch = synthetic.copy_memory(1, B, T)
    logits = np.full((B, T + 20, Copy.vocab_size), -30.0, np.float32)
    np.put_along_axis(logits, batch["targets"][..., None], 30.0, axis=-1)  # right everywhere
    logits[:, : T + 10] = 0.0  # uniform (ln 10 nats) on the blank steps
    targets = jnp.asarray(batch["targets"])
    m = Copy.batch_metrics(jnp.asarray(logits), targets)
    assert float(m["recall_loss"]) < 1e-6 and float(m["recall_accuracy"]) == 1.0
    assert math.isclose(float(m["loss"]), (T + 10) * math.log(10) / (T + 20), rel_tol=1e-5)
    wrong = batch["targets"][0, -1] % 8 + 1  # another symbol
    logits[0, -1, wrong] = 60.0
    m = Copy.batch_metrics(jnp.asarray(logits), targets)
    assert math.isclose(float(m["recall_accuracy"]), 1 - 1 / (10 * B), rel_tol=1e-6)


def test_the_batch_metrics_are_the_tasks_per_example_metrics_averaged():
    """``Copy.batch_metrics`` (one mean over the batch, as the script trains and reports) and the
    mean of ``per_example`` (the benchmark's) are one metric, to float32 rounding."""
    task = Copy(T=12)
    batch = task.draw(3, 5)
    logits = np.random.default_rng(0).normal(size=(5, task.sequence_length, task.vocab_size)).astype(np.float32)
    logits[:, -10:][np.arange(5)[:, None], np.arange(10), batch["y"][:, -10:]] += 3.0  # most answers right
    ours = Copy.batch_metrics(jnp.asarray(logits), jnp.asarray(batch["y"]))
    theirs = task.per_example(jnp.asarray(logits), batch)
    for key, per_example in (("loss", "loss"), ("recall_loss", "recall_loss"), ("recall_accuracy", "accuracy")):
        assert math.isclose(float(ours[key]), float(np.mean(theirs[per_example])), rel_tol=1e-6), key
    assert 0.5 < float(ours["recall_accuracy"]) < 1


def test_the_gradient_profiles_figure_draws_each_model_against_the_step_per_phase():
    """``plots.profiles``: one panel per title, sharing a log y; each label's values against t."""
    import matplotlib.pyplot as plt

    from rnnlab import plots

    series = {"at init": {"rnn": [1.0, 0.1, 0.01], "lstm": [2.0, 2.0, 2.0]}, "trained": {"rnn": [1.0, 2.0, 3.0]}}
    fig = plots.profiles(series, xlabel="t", ylabel="norm", suptitle="S", colors={"rnn": "tab:red"})
    first, second = fig.axes
    assert [first.get_title(), second.get_title()] == ["at init", "trained"]
    assert first.get_yscale() == second.get_yscale() == "log" and first.get_shared_y_axes().joined(first, second)
    assert [line.get_label() for line in first.lines] == ["rnn", "lstm"] and first.lines[0].get_color() == "tab:red"
    np.testing.assert_array_equal(first.lines[0].get_xdata(), [0, 1, 2])
    np.testing.assert_array_equal(first.lines[0].get_ydata(), [1.0, 0.1, 0.01])
    assert first.get_ylabel() == "norm" and first.get_xlabel() == second.get_xlabel() == "t"
    assert first.get_legend() is None and second.get_legend() is not None and fig.get_suptitle() == "S"
    plt.close(fig)


def test_a_learning_rate_sweep_keeps_the_rate_with_the_lowest_validation_loss(tmp_path):
    """Every model trains at each --learning-rate (one program) and keeps the rate whose median
    loss on the validation stream is lowest; a rate of 1e3 diverges (Adam) and is never chosen."""
    copy = load_script("copy_memory")
    argv = ["--quick", "--quiet", "--compile-cache", "off", "--lengths", "5", "--steps", "15", "--hidden", "8"]
    argv += ["--models", "rnn", "lru", "--optimizer", "adam", "--learning-rate", "1e-2", "1e3", "--out", str(tmp_path)]
    results = copy.main(argv)
    assert results["learning_rates"] == [1e-2, 1e3]
    for model in ("rnn", "lru"):
        sweep = results["learning_rate_sweep"][model]["5"]
        assert [row["learning_rate"] for row in sweep] == [1e-2, 1e3]
        valid = [row["validation_loss"]["median"] for row in sweep]
        best = int(np.nanargmin([np.inf if np.isnan(v) else v for v in valid]))
        assert results["chosen_learning_rate"][model]["5"] == sweep[best]["learning_rate"] == 1e-2
        # the reported held-out numbers are the chosen rate's
        assert results["final_loss"][model]["5"] == sweep[best]["loss"]
        assert results["recall_accuracy"][model]["5"] == sweep[best]["recall_accuracy"]
        assert 0 <= results["recall_accuracy"][model]["5"]["median"] <= 1
    assert results["recall_baseline"] == math.log(8) and results["recall_chance_accuracy"] == 1 / 8


def test_a_typed_t_max_wins_and_other_models_refuse_it(tmp_path, capsys):
    from rnnlab import zoo

    layer = zoo.make_layer("lstm_chrono", 4, t_max=1020, cell_options={"t_max": 1500.0})
    assert layer.cell.t_max == 1500.0  # what the user typed, not the script's T + 20
    copy = load_script("copy_memory")
    argv = ["--quick", "--quiet", "--models", "lstm", "--cell-options", "lstm=t_max:100", "--out", str(tmp_path)]
    with pytest.raises(SystemExit):
        copy.main(argv)
    assert "lstm has no chrono initialisation, so t_max does not apply to it" in capsys.readouterr().err


def test_the_fair_comparison_merges_every_variant(tmp_path):
    """The fair T = 1000 script at T = 10: every variant's run folder, then one results file
    keyed by variant with the parameters, swept and chosen learning rates and recall metrics."""
    fair = load_script("copy_memory_fair")
    argv = ["--quick", "--quiet", "--steps", "6", "--learning-rate", "1e-3", "1e-2", "--out", str(tmp_path)]
    results = fair.main(argv + ["--variants", "lstm_chrono", "lru_no_gamma", "lru_ring_0_1"])
    assert set(results["parameters"]) == {"lstm_chrono", "lru_no_gamma", "lru_ring_0_1"}
    assert results["learning_rates"] == [1e-3, 1e-2]
    assert all(results["chosen_learning_rate"][v] in (1e-3, 1e-2) for v in results["parameters"])
    # chrono's T_max = 3T/2, the LRU without gamma has no gamma_log (H fewer parameters), default ring
    assert results["cell_options"]["lstm_chrono"] == {"t_max": 15.0}
    assert results["parameters"]["lru_ring_0_1"] - results["parameters"]["lru_no_gamma"] == 8
    assert results["cell_options"]["lru_ring_0_1"] == {}
    for key in ("final_loss", "recall_loss", "recall_accuracy"):
        assert set(results[key]) == set(results["parameters"])
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(results))
    assert (tmp_path / "learning_curves.png").stat().st_size > 0


def test_script_writes_losses_per_model_and_length_and_the_gradient_profiles(tmp_path):
    copy = load_script("copy_memory")
    results = copy.main(
        [
            "--quick",
            "--quiet",
            "--compile-cache",
            "off",
            "--lengths",
            "5",
            "--steps",
            "20",
            "--hidden",
            "8",
            "--models",
            "rnn",
            "gru_chrono",
            "irnn",
            "exprnn",
            "--model-hidden",
            "rnn=6",
            "--model-clip",
            "irnn=value:1",
            "--out",
            str(tmp_path),
        ]
    )
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(results))
    assert results["baseline"] == {"5": synthetic.copy_memory_baseline(5)}
    assert results["hidden"] == {"rnn": 6, "gru_chrono": 8, "irnn": 8, "exprnn": 8}
    assert results["clip"] == {"rnn": "off", "gru_chrono": "off", "irnn": "value:1", "exprnn": "off"}
    # one-hot inputs (10 symbols), a 10-way head: the tanh RNN's count, and expRNN's (generator, no biases, b_mod)
    assert results["parameters"]["rnn"] == 6 * 10 + 6 * 6 + 2 * 6 + 6 * 10 + 10
    assert results["parameters"]["exprnn"] == 8 * 10 + 8 * 8 + 8 + 8 * 10 + 10
    for model in ("rnn", "gru_chrono", "irnn", "exprnn"):
        loss = results["final_loss"][model]["5"]
        assert len(loss["per_seed"]) == 2 and loss["q25"] <= loss["median"] <= loss["q75"]
        for phase in ("init", "trained"):
            norms = np.array(results["gradient_norms"][model]["5"][phase])
            assert norms.shape == (25,) and np.all(np.isfinite(norms)) and np.all(norms >= 0)
    for figure in ("learning_curves.png", "gradient_norms.png"):
        assert (tmp_path / figure).stat().st_size > 0


def test_every_seed_and_length_trains_on_its_own_stream():
    """(--seed, T) -> a distinct training stream (seed * 1000 + T alone repeats: 0, 1500 = 1, 500),
    while the lengths of the committed runs (T <= 1000) keep the stream they were trained on."""
    data_seed = load_script("copy_memory").data_seed
    pairs = [(seed, T) for seed in range(4) for T in (10, 100, 500, 1000, 1500, 2000, 3000)]
    assert len({data_seed(seed, T) for seed, T in pairs}) == len(pairs)
    assert data_seed(0, 100) == 100 and data_seed(2, 1000) == 3000
    first = lambda seed, T: synthetic.seeded_batches(synthetic.copy_memory, data_seed(seed, T), 1, 2, T)(0)["tokens"]
    assert not np.array_equal(first(0, 1500)[..., :10], first(1, 500)[..., :10])  # the symbols to recall
