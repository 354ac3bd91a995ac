"""The copy-memory experiment: the task and its memoryless baseline, and the script's results."""

import json
import math

import jax.numpy as jnp
import numpy as np
from conftest import load_script

from rnnlab.data import synthetic


def test_the_memoryless_strategy_scores_the_baseline():
    """Blanks where the target is blank for sure, a uniform guess over the 8 symbols during
    recall: 10 ln 8 / (T + 20) nats per step, through the script's own loss."""
    copy = load_script("copy_memory")
    T = 7
    batch = synthetic.copy_memory(0, 4, T)
    assert batch["tokens"].shape == (4, T + 20)
    np.testing.assert_array_equal(batch["targets"][:, -10:], batch["tokens"][:, :10])
    assert np.all(batch["tokens"][:, 10 + T - 1] == synthetic.COPY_DELIMITER)
    logits = np.full((4, T + 20, copy.VOCAB), -1e9, np.float32)
    logits[:, : T + 10, synthetic.COPY_BLANK] = 0.0
    logits[:, T + 10 :, 1 : 1 + synthetic.COPY_SYMBOLS] = 0.0
    loss = float(copy.cross_entropy(jnp.asarray(logits), jnp.asarray(batch["targets"])))
    assert math.isclose(loss, synthetic.copy_memory_baseline(T), rel_tol=1e-6)  # float32 loss
    assert math.isclose(loss, 10 * math.log(8) / (T + 20), rel_tol=1e-6)


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
