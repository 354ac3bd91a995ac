"""The main job: `experiments/vanishing_gradients.py --quick` writes the promised
results.json and figures, and its numbers show the textbook picture."""

import json

import numpy as np
import pytest
from conftest import load_script


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vanishing")
    module = load_script("vanishing_gradients")
    module.main(["--quick", "--quiet", "--out", str(out), "--models", "rnn", "lstm", "gru", "lstm_chrono", "exprnn"])
    return out, json.loads((out / "results.json").read_text()), module.Config


def test_writes_results_and_figures(quick_run):
    out, results, _ = quick_run
    for name in (
        "config.json",
        "metrics.jsonl",
        "gradient_norms.png",
        "jacobian_norms.png",
        "init_sweeps.png",
        "clipping.png",
        "training_loss.png",
    ):
        assert (out / name).stat().st_size > 0, name
    for model in ("rnn", "lstm", "gru"):
        for T in ("20", "50"):
            for phase in ("init", "trained"):
                curve = results["gradient_norms"][model][T][phase]
                assert set(curve) == {"distance", "median", "q25", "q75", "diverged", "diverged_seeds"}
                assert curve["distance"] == list(range(int(T)))
                assert np.all(np.array(curve["q25"]) <= np.array(curve["q75"]))
    assert results["final_loss"]["lstm"]["50"]["median"] > 0
    assert len(results["spectral_radii"]["lstm"]["50"]["init"]) == 4  # one per gate block


def test_rnn_vanishes_and_lstm_keeps_its_gradient(quick_run):
    _, results, _ = quick_run
    for phase in ("init", "trained"):
        rnn = results["ratios"]["rnn"]["50"][phase]["median"]
        lstm = results["ratios"]["lstm"]["50"][phase]["median"]
        assert rnn < 1e-6 and lstm > 100 * rnn, (phase, rnn, lstm)
    # longer sequences lose more
    assert results["ratios"]["rnn"]["50"]["init"]["median"] < results["ratios"]["rnn"]["20"]["init"]["median"]


def test_initialisation_sweeps_order_as_theory_says(quick_run):
    _, results, cfg = quick_run
    radius = [results["sweeps"]["spectral_radius"][str(r)]["ratio_median"] for r in (0.5, 1.0, 1.5)]
    assert radius[0] < radius[1] < radius[2] and radius[0] < 1e-6 and radius[2] > 1.0  # vanishing -> exploding
    bias = [results["sweeps"]["forget_bias"][str(b)]["ratio_median"] for b in (0.0, 1.0, 3.0)]
    assert bias[0] < bias[1] < bias[2]


def test_clipping_tames_the_exploding_regime(quick_run):
    _, results, _ = quick_run
    clipped, unclipped = results["clipping"]["clip 1.0"], results["clipping"]["no clipping"]
    assert clipped["diverged"] is None and np.isfinite(clipped["final_loss_median"])
    assert unclipped["diverged"] is not None or unclipped["final_loss_median"] > 100 * clipped["final_loss_median"]


def test_remedies_keep_the_gradient_that_their_plain_models_lose(quick_run):
    """Chrono init (T_max = T) keeps more of the LSTM's gradient; expRNN keeps the tanh RNN's,
    and its recurrent matrix stays orthogonal (every eigenvalue on the unit circle) through training."""
    _, results, _ = quick_run
    ratio = lambda model, phase: results["ratios"][model]["50"][phase]["median"]
    for phase in ("init", "trained"):
        assert ratio("lstm_chrono", phase) > 10 * ratio("lstm", phase), phase
        assert ratio("exprnn", phase) > 1e-2 > 1e6 * ratio("rnn", phase), phase
        np.testing.assert_allclose(results["spectral_radii"]["exprnn"]["50"][phase], [1.0], atol=1e-5)  # float32 expm
    assert results["models"]["exprnn"].startswith("expRNN as in the authors' code")


def test_jacobians_respect_pascanus_bound(quick_run):
    """||dh_T/dh_{T-k}||_2 <= lambda_1(W_hh)^k for the tanh RNN and expRNN (Pascanu et al. 2013),
    measured Jacobians against singular values computed by numpy; expRNN's lambda_1 is 1."""
    _, results, _ = quick_run
    for model in ("rnn", "exprnn"):
        for T in ("20", "50"):
            for phase in ("init", "trained"):
                assert 0 < results["pascanu_bound"][model][T][phase]["max_jacobian_over_bound"] <= 1 + 1e-6
    np.testing.assert_allclose(results["largest_singular_values"]["exprnn"]["50"]["init"], [1.0], atol=1e-5)
    assert results["pascanu_bound"]["lstm"]["50"] == {}  # gated cells: the bound does not apply as such


def test_the_largest_lyapunov_exponent_predicts_the_gradient_decay(quick_run):
    """exp(lambda_1) is the factor per step by which ||dL/dh_t|| falls (measured at T=50 within
    0.03 per step for every model and phase; asserted within 25% or 0.02)."""
    out, results, _ = quick_run
    for model, by_T in results["lyapunov"].items():
        for phase, lyap in by_T["50"].items():
            exponent, decay = lyap["exponent"], lyap["gradient_decay"]
            assert exponent == lyap["exponents"][0] and exponent < 0, (model, phase)
            assert abs(exponent - decay) <= max(0.02, 0.25 * abs(exponent)), (model, phase, exponent, decay)
    assert (out / "lyapunov.png").stat().st_size > 0


def test_results_carry_the_exact_finite_time_exponent_beside_the_qr_estimate(quick_run):
    """lambda_1(T) = (1/T) ln ||J_T ... J_1|| is recorded per model, phase and T; a finite product's
    norm is at least what any unit start frame grows to, so it is never below the QR estimate
    (up to rounding), and at T = 50 the two are within 0.1 per step for these models."""
    _, results, _ = quick_run
    for model, by_T in results["lyapunov"].items():
        for T, phases in by_T.items():
            for phase, lyap in phases.items():
                exact, qr = lyap["finite_time_exponent"], lyap["exponent"]
                assert exact >= qr - 1e-6, (model, T, phase, exact, qr)
                if T == "50":  # at short T the norm also counts transient growth the QR frame does not see
                    assert abs(exact - qr) <= 0.1, (model, T, phase, exact, qr)


def test_the_quoted_clipping_claims_hold_under_a_fresh_perturbation(tmp_path):
    """The clipping demo is chaotic in float32 (another CPU's rounding moves its divergence steps),
    so the docs quote what held over 9 draws of the weights.  A draw none of them saw (weights x
    (1 + 1e-7 N(0, 1)), perturbation seed 99) at the committed settings must keep every claim:
    unclipped, at least one seed goes non-finite; clipped, every seed completes all 150 steps
    with the pre-clip norm of order 1e3 and a final loss above the 1/6 baseline."""
    module = load_script("vanishing_gradients")
    argv = ["--quiet", "--compile-cache", "off", "--out", str(tmp_path), "--models", "rnn", "--lengths", "10"]
    argv += ["--steps", "1", "--measure-size", "2", "--sweep-length", "10", "--radii", "1.0", "--forget-biases", "1.0"]
    results = module.main(argv + ["--clip-perturbations", "1", "--clip-perturbation-seed", "99"])
    clipping = results["clipping"]
    assert (clipping["length"], clipping["learning_rate"], clipping["radius"]) == (100, 0.05, 1.5)  # the committed demo
    committed = json.loads((module_root() / "docs" / "results" / "vanishing_gradients.json").read_text())["clipping"]
    assert committed["perturbations"]["scale"] == clipping["perturbations"]["scale"] == 1e-7
    unclipped, clipped = (clipping[arm]["under_perturbation"] for arm in ("no clipping", "clip 1.0"))
    assert all(any(draw) for draw in unclipped["diverged_at_step"])
    assert clipped["steps_completed_min"] == 150
    assert 1e3 <= clipped["max_grad_norm"][0] <= clipped["max_grad_norm"][1] < 1e4
    assert clipped["final_loss_median"][0] > 1 / 6


def module_root():
    import pathlib

    return pathlib.Path(__file__).parents[1]
