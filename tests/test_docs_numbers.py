"""The numbers the README quotes are the ones in the committed results (docs/results/*.json).

Each check renders a sentence or table row from a results file, in the format the README
prints it, and looks for it in the README: a number typed by hand that no longer matches
its file (or a file refreshed without the README) fails here.  To refresh after a change
that moves them: re-run the command in the file's ``config``, copy it in with
``docs/results/publish.py`` and update the README until this passes.
"""

import json
import math
import pathlib
import statistics

import pytest

ROOT = pathlib.Path(__file__).parents[1]
# the README and the user guide it points to: a number may move from one to the other
README = (ROOT / "README.md").read_text() + "\n\n" + (ROOT / "docs" / "guide.md").read_text()
RESULTS = ROOT / "docs" / "results"


def results(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def e1(x: float) -> str:
    return f"{x:.1e}"


def g2(x: float) -> str:
    return f"{x:.2g}"


def flowing(text: str) -> str:
    """Whitespace-insensitive: a sentence may wrap anywhere in the README."""
    return " ".join(text.split())


def assert_quoted(*fragments: str) -> None:
    readme = flowing(README)
    missing = [f for f in fragments if flowing(f) not in readme]
    assert not missing, f"README does not say (or no longer says) what the results file holds: {missing}"


def test_the_main_jobs_ratio_table():
    ratios = results("vanishing_gradients")["ratios"]
    for label, model in (("tanh RNN, init / after 100 steps", "rnn"), ("LSTM (forget bias 1)", "lstm"), ("GRU", "gru")):
        cells = [
            f"{e1(ratios[model][T]['init']['median'])} / {e1(ratios[model][T]['trained']['median'])}"
            for T in ratios[model]
        ]
        assert_quoted(f"| {label} | {' | '.join(cells)} |")
    rnn, lstm = (ratios[m]["100"]["trained"]["median"] for m in ("rnn", "lstm"))
    assert_quoted(f"the RNN's ratio is {e1(rnn)} (≤ 1e-6) and the LSTM's {e1(lstm)}, {e1(lstm / rnn)} times larger")


def test_the_lyapunov_exponents_and_their_agreement_with_the_gradient_decay():
    lyapunov = results("vanishing_gradients")["lyapunov"]
    pair = lambda m, phase: (
        f"{lyapunov[m]['500'][phase]['exponent']:.3f} / {lyapunov[m]['500'][phase]['gradient_decay']:.3f}"
    )
    rnn = lyapunov["rnn"]["500"]["init"]
    assert_quoted(
        f"tanh RNN λ1 = {rnn['exponent']:.3f} against a slope of {rnn['gradient_decay']:.3f} "
        f"(exp(λ1) = {math.exp(rnn['exponent']):.2f} lost per step), LSTM {pair('lstm', 'init')}, "
        f"GRU {pair('gru', 'init')}; after training {pair('rnn', 'trained')}, {pair('lstm', 'trained')}, "
        f"{pair('gru', 'trained')}."
    )
    gaps = [
        (abs(e["exponent"] / e["gradient_decay"] - 1), int(T))
        for by_T in lyapunov.values()
        for T, phases in by_T.items()
        for e in phases.values()
    ]
    worst, long_worst = max(g for g, _ in gaps), max(g for g, T in gaps if T >= 200)
    assert_quoted(f"differ by at most {100 * worst:.1f}% ({100 * long_worst:.1f}% at T ≥ 200)")


def test_the_initialisation_sweeps_and_the_clipping_demo():
    run = results("vanishing_gradients")
    radius = [g2(s["ratio_median"]) for s in run["sweeps"]["spectral_radius"].values()]
    assert_quoted(
        f"moves the T={run['sweeps']['length']} ratio from {radius[0]} through {radius[1]} and {radius[2]} "
        f"to {radius[3]} and {radius[4]}"
    )
    bias = [g2(s["ratio_median"]) for s in run["sweeps"]["forget_bias"].values()]
    assert_quoted(f"bias 0 (Flax's default) / 1 / 3 gives {' / '.join(bias)}")
    clipping = run["clipping"]
    unclipped, clipped = (clipping[arm]["under_perturbation"] for arm in ("no clipping", "clip 1.0"))
    draws, seeds = len(unclipped["diverged_at_step"]), len(unclipped["diverged_at_step"][0])
    diverged = [s for s in unclipped["per_seed"] if s]
    assert all(any(draw) for draw in unclipped["diverged_at_step"])  # "every draw lost at least one seed"
    assert all(b is None for draw in clipped["diverged_at_step"] for b in draw)
    assert clipped["final_loss_median"][0] > 1 / 6  # "none learned": above the baseline in every draw
    assert_quoted(
        f"Over the weights as drawn and {clipping['perturbations']['count']} perturbations of them at "
        f"{clipping['perturbations']['scale']:.0e} relative ({draws * seeds} runs: {draws} draws x {seeds} seeds), "
        f"training without clipping went non-finite in {sum(s['diverged'] for s in diverged)} runs, between steps "
        f"{min(s['first'] for s in diverged)} and {max(s['last'] for s in diverged)}, and every draw lost at least one seed",
        f"all {draws * seeds} runs completed the {clipped['steps_completed_min']} steps, the pre-clip norm peaking at "
        f"{clipped['max_grad_norm'][0]:.1e} to {clipped['max_grad_norm'][1]:.1e}, but none learned: the median final "
        f"loss, {g2(clipped['final_loss_median'][0])} to {g2(clipped['final_loss_median'][1])}, stays above the 0.167 baseline",
    )


def test_the_remedies_sentence():
    ratios = {m: r["500"]["init"]["median"] for m, r in results("vanishing_gradients_remedies")["ratios"].items()}
    assert_quoted(
        f"keeps the LSTM's ratio at initialisation at {e1(ratios['lstm_chrono'])} instead of {e1(ratios['lstm'])}",
        f"expRNN keeps {g2(ratios['exprnn'])} ({g2(ratios['exprnn_tanh'])} with tanh) where the tanh RNN has "
        f"{e1(ratios['rnn'])}",
    )


def test_the_indrnn_and_cornn_sentence():
    r = results("vanishing_gradients_indrnn_cornn")
    ind, co = r["ratios"]["indrnn"]["500"], r["ratios"]["cornn"]["500"]
    lyapunov = r["lyapunov"]["cornn"]["500"]["init"]
    bound = r["spectral_radii"]["indrnn"]["500"]["trained"][0]
    assert bound <= 2 ** (1 / 500) + 1e-7  # the constraint keeps |u| within IndRNN's bound for T = 500
    assert_quoted(
        f"IndRNN keeps {g2(ind['init']['median'])} of the gradient",
        f"and {e1(ind['trained']['median'])} after 100 steps",
        f"largest `|u|` {bound:.6g} after training, inside the constraint's `2^(1/500)`",
        f"keeps {e1(co['init']['median'])}: the damped oscillators",
        f"lambda_1 = {lyapunov['exponent']:.3f} against a fitted decay of {lyapunov['gradient_decay']:.3f}",
    )


@pytest.mark.parametrize("name", ["vanishing_gradients", "vanishing_gradients_remedies"])
def test_committed_results_say_how_they_were_made(name):
    run = results(name)
    assert "config" in run or "command" in run
    assert not {"compile", "runtime_s"} & run.keys()  # a clock's numbers would change on every refresh


def test_the_linear_recurrences_paragraph():
    ratio = lambda name, model: results(name)["ratios"][model]["500"]
    both = lambda r: f"{e1(r['init']['median'])} / {e1(r['trained']['median'])}"
    copy = results("copy_memory_T1000_lru")
    lru, lstm = (copy["final_loss"][m]["1000"] for m in ("lru", "lstm"))
    baseline = copy["baseline"]["1000"]
    assert_quoted(
        f"`[0, 1]` keeps {both(ratio('vanishing_gradients_linear', 'lru'))} of the gradient",
        f"`[0.9, 0.999]` {both(ratio('vanishing_gradients_lru_ring', 'lru'))}",
        f"where the LSTM keeps {e1(ratio('vanishing_gradients_lru_ring', 'lstm')['init']['median'])}",
        f"reaches a held-out loss of {e1(lru['median'])}, {100 * lru['median'] / baseline:.2g}% of the baseline "
        f"{baseline:.3g} (every seed below {e1(max(lru['per_seed']))})",
        f"ends at {lstm['median']:.2g}, not even down to the baseline",
        f"has {round(copy['parameters']['lru'] / copy['parameters']['lstm'])} times the LSTM's parameters",
    )
    assert max(lru["per_seed"]) < float(e1(max(lru["per_seed"])))  # "below" the rounded bound
    assert copy["config"]["steps"] == 600 and copy["cell_options"]["lru"] == {"r_min": 0.999, "r_max": 0.9999}


def test_the_copy_task_table_at_T100():
    run = results("copy_memory_T100")
    loss = lambda m: run["final_loss"][m]["100"]
    iqr = lambda m, digits: f"[{loss(m)['q25']:.{digits}g}, {loss(m)['q75']:.{digits}g}]"
    assert_quoted(
        f"`10 ln 8 / 120 = {run['baseline']['100']:.4f}`",
        f"| tanh RNN (H = {run['hidden']['rnn']}) | {loss('rnn')['median']:.4g} {iqr('rnn', 4)}",
        f"| LSTM (H = {run['hidden']['lstm']}) | {loss('lstm')['median']:.4g} {iqr('lstm', 4)} |",
        f"| expRNN (H = {run['hidden']['exprnn']}) | **{loss('exprnn')['median']:.3g}** {iqr('exprnn', 3)} |",
        f"its median is {100 * loss('exprnn')['median'] / run['baseline']['100']:.2f}% of the baseline",
    )


def test_the_applications_numbers():
    forecast, sentiment, seq2seq = results("forecast"), results("sentiment"), results("seq2seq")
    assert_quoted(
        f"one-step MSE **{forecast['one_step_mse']:.1e}** against {forecast['one_step_naive_mse']:.1e} for the last "
        f"value; a recursive {forecast['multi_step_horizon']}-step forecast {forecast['multi_step_mse']:.1e} "
        f"against {forecast['multi_step_naive_mse']:.1e}".replace("e-0", "e-"),
        f"bidirectional **{sentiment['models']['bi']['accuracy']:.3f}** test accuracy, unidirectional "
        f"{sentiment['models']['uni']['accuracy']:.3f}",
        f"greedy exact match **{seq2seq['greedy_exact_match']:.3g}**, character error rate "
        f"{seq2seq['greedy_cer']:.2g}; beam search (width {seq2seq['beam']}) {seq2seq['beam_exact_match']:.3g} on "
        f"the first {seq2seq['beam_examples']} held-out pairs (greedy {seq2seq['greedy_exact_match_same_examples']:.3g} "
        "on the same",
    )


def test_the_exprnn_copy_run_at_T1000():
    run = results("copy_memory_T1000")
    loss = run["final_loss"]["exprnn"]["1000"]["median"]
    assert_quoted(
        f"reached step {run['steps']} in 30 minutes here and a held-out loss of {loss:.1e}".replace("e-06", "e-6")
        + f" against the baseline {run['baseline']['1000']:.3g}"
    )


def test_the_text_generation_run():
    run = results("text_generation")
    sample = "\n".join((run["sample_prime"] + run["sample"]).splitlines()[:3])
    assert_quoted(
        f"{run['train_tokens'] / 1000:.0f}k training characters, {run['vocab_size']} symbols): validation "
        f"**{run['val_loss_nats']:.3f} nats/char ({run['val_bits_per_char']:.2f} bits/char)** against a unigram "
        f"entropy of {run['unigram_entropy_nats']:.3f} nats",
        f'(prime "{run["sample_prime"]}", temperature {run["config"]["temperature"]:g})',
    )
    assert f"```\n{sample}\n```" in README  # the sample exactly, line breaks included


def shown_as(value: float, cell: str) -> bool:
    """``cell`` is ``value`` rounded to the decimals the README prints."""
    decimals = len(cell.split(".")[1]) if "." in cell else 0
    return round(value, decimals) == float(cell)


def test_the_adding_problem_table():
    run = results("adding_problem")
    baseline = f"predicting 1 scores {run['baseline_test_mse']:.3f}"
    assert_quoted(baseline)
    for label, model in (("tanh RNN (PyTorch init)", "rnn"), ("LSTM (forget bias 1)", "lstm"), ("GRU", "gru")):
        section = README[README.index("**Adding problem, T=100**") :]
        row = next(line for line in section.splitlines() if line.startswith(f"| {label} |"))
        cells = [c.strip() for c in row.strip("|").split("|")[1:]]
        mse = run["models"][model]["points"][0]["test_mse"]
        wanted = [*mse["per_seed"], mse["median"]]
        assert len(cells) == len(wanted) and all(map(shown_as, wanted, cells)), (row, wanted)


def test_the_indrnn_and_cornn_adding_runs_in_reproductions():
    """docs/reproductions.md section 7 quotes the committed adding-problem runs of the two models."""
    text = flowing((ROOT / "docs" / "reproductions.md").read_text())
    fmt = lambda m: f"{m['median']:.2g} [{m['q25']:.2g}, {m['q75']:.2g}]"
    for name, model in [
        ("adding_indrnn_T100", "indrnn"),
        ("adding_indrnn_1layer_T100", "indrnn"),
        ("adding_indrnn_T500", "indrnn"),
        ("adding_cornn_T100", "cornn"),
    ]:
        run = results(name)
        mse = run["models"][model]["points"][0]["test_mse"]
        assert fmt(mse) in text, f"reproductions.md does not quote {name}: {fmt(mse)}"
        assert f"{run['baseline_test_mse']:.3f} " in text  # the baseline it is compared with


def newton_run(runs, **match):
    return next(r for r in runs if all(r[k] == v for k, v in match.items()))


def quartiles(values) -> str:
    """``median [q25–q75]`` of counts, as section 8 prints them."""
    import numpy as np

    q = np.percentile(np.asarray(values, float), [50, 25, 75])
    return f"{q[0]:g} [{q[1]:g}–{q[2]:g}]"


def median_range(values) -> str:
    """``median (min–max)`` of counts: three seeds have no quartiles worth the name."""
    import numpy as np

    return f"{np.median(values):g} ({min(values):g}–{max(values):g})"


def newton_figure2_table(r: dict) -> str:
    """Section 8's Figure 2 table, rendered from results/newton_figure2.json: per g, lambda_1 at the
    shortest T (their plot's abscissa) and the longest (medians over seeds), their iteration count
    (median [IQR] over seeds), their heatmap's statistic at the longest T (the mean over seeds of
    min(count, T)) and how many seeds converged, per T."""
    import numpy as np

    runs = r["runs"]
    lengths, gains = sorted({x["T"] for x in runs}), sorted({x["g"] for x in runs})
    seeds = len({x["seed"] for x in runs})
    span = " / ".join(f"{T:,}" for T in lengths)
    first, last = lengths[0], lengths[-1]
    lines = [
        f"| g | λ_1 at T = {first:,} (their plot's), median of {seeds} seeds | λ_1 at T = {last:,}, median | "
        f"DEER iterations (their count: linear solves + 1), median [IQR], T = {span} | "
        f"mean of min(count, T) at T = {last:,} (their heatmap's statistic) | converged / diverged, T = {span} |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for g in gains:
        at = lambda T: [x for x in runs if x["g"] == g and x["T"] == T]
        lam = lambda T: np.median([x["lambda_1"] for x in at(T)])
        its = " / ".join(quartiles([x["iterations_their_count"] for x in at(T)]) for T in lengths)
        mean = np.mean([min(x["iterations_their_count"], last) for x in at(last)])
        count = lambda T, s: sum(x["status"] == s for x in at(T))
        status = " / ".join(f"{count(T, 'converged')}/{count(T, 'diverged')}" for T in lengths)
        lines.append(f"| {g:.2f} | {lam(first):+.3f} | {lam(last):+.3f} | {its} | {mean:.4g} | {status} |")
    return "\n".join(lines)


def newton_models_table(r: dict, T: int = 1000) -> str:
    """Section 8's main-job table at T, rendered from results/parallel_newton.json: median (min–max)
    over the seeds, our count (linear solves)."""
    import numpy as np

    runs, methods = r["runs"], r["config"]["methods"]
    names = {"newton": "Newton", "quasi_newton": "quasi-Newton", "quasi_elk": "quasi-ELK"}
    seeds = len(r["config"]["seeds"])
    lines = [
        f"| model | phase | λ_1, median (min, max) of {seeds} seeds | "
        + " | ".join(f"{names[m]}: median (min–max) (not converged)" for m in methods)
        + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in methods) + " |",
    ]
    for name in r["config"]["models"]:
        for phase in ("init", "trained"):
            at = lambda m: [
                x for x in runs if x["model"] == name and x["phase"] == phase and x["T"] == T and x["method"] == m
            ]
            lam = [x["lambda_1"] for x in at(methods[0])]
            cells = []
            for m in methods:
                bad = sum(x["status"] != "converged" for x in at(m))
                cells.append(median_range([x["iterations"] for x in at(m)]) + (f" ({bad})" if bad else ""))
            lines.append(
                f"| {name} | {phase} | {np.median(lam):+.3f} ({min(lam):+.3f}, {max(lam):+.3f}) | "
                + " | ".join(cells)
                + " |"
            )
    return "\n".join(lines)


def newton_training_table(r: dict) -> str:
    """Section 8's training table, rendered from results/parallel_newton.json."""
    import numpy as np

    steps = r["config"]["parallel_steps"]
    lines = [
        f"| model | path | loss at step {steps} (its batch, before its update) | max \\|loss − sequential loss\\| "
        "over steps | iterations per step, median over steps of the batch's max (first step, last step) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for x in r["training"]:
        label = x["path"] + (", warm start" if x["warm_start"] else "")
        per_step = [max(i) for i in x["iterations"]]
        its = f"{np.median(per_step):g} ({per_step[0]}, {per_step[-1]})" if per_step else "—"
        lines.append(f"| {x['model']} | {label} | {x['losses'][-1]:.4f} | {x['max_loss_difference']:.1e} | {its} |")
    return "\n".join(lines)


# the ELK case's solver labels as section 8 prints them: sigmasq 1e2 is the value of elk's Fig. 4
# experiment (fig4.py), not the library's default (elk_alg's sigmasq=1e8), and 1 was tried after 1e2 failed
ELK_LABELS = {
    "quasi-ELK, sigmasq 1e2 (the authors')": "quasi-ELK, sigmasq 1e2 (elk's Fig. 4 value)",
    "quasi-ELK, sigmasq 1": "quasi-ELK, sigmasq 1 (tuned: tried after 1e2 failed)",
}


def newton_elk_table(r: dict) -> str:
    lines = ["| solver | iterations (cap T) | status | final residual |", "| --- | --- | --- | --- |"]
    for x in r["elk"]:
        label = ELK_LABELS.get(x["solver"], x["solver"])
        lines.append(f"| {label} | {x['iterations']} | {x['status']} | {x['residual']:.1e} |")
    return "\n".join(lines)


def newton_ms(seconds: float) -> str:
    """Milliseconds as section 8's cost tables print them: 3 digits, whole numbers from 1000 up."""
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 1000 else f"{ms:,.0f}"


def newton_iteration_table(bench: dict) -> str:
    """Section 8's cost table, rendered from benchmarks/results_newton_cpu.json: one iteration
    against one sequential pass, the Jacobians from the structure and from jax.jacfwd."""
    ms = lambda row, k: newton_ms(row[k + "_s"]) if k + "_s" in row else "skipped"
    ratio = lambda row, k: f"{row[k + '_over_sequential']:.3g}x" if k + "_s" in row else "—"
    lines = [
        "| cell | H | T | sequential pass (ms) | quasi-Newton iteration (ms): structure / jacfwd | "
        "Newton iteration (ms): structure / jacfwd | one iteration / one pass: quasi structure, jacfwd; Newton structure, jacfwd |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in (x for x in bench["rows"] if x["table"] == "iteration"):
        lines.append(
            f"| {row['cell']} | {row['H']} | {row['T']:,} | {newton_ms(row['sequential_s'])} | "
            f"{ms(row, 'quasi_after')} / {ms(row, 'quasi_before')} | {ms(row, 'newton_after')} / {ms(row, 'newton_before')} | "
            f"{ratio(row, 'quasi_after')}, {ratio(row, 'quasi_before')}; {ratio(row, 'newton_after')}, {ratio(row, 'newton_before')} |"
        )
    return "\n".join(lines)


def newton_solve_table(bench: dict) -> str:
    lines = [
        "| cell | H | T | sequential (ms) | Newton (ms, iterations) | quasi-Newton (ms, iterations) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in (x for x in bench["rows"] if x["table"] == "solve"):
        path = lambda p: f"{newton_ms(row[p + '_s'])} ({row[p + '_iterations']})" if p + "_s" in row else "skipped"
        lines.append(
            f"| {row['cell']} | {row['H']} | {row['T']:,} | {newton_ms(row['sequential_s'])} | {path('newton')} | {path('quasi_newton')} |"
        )
    return "\n".join(lines)


def newton_span(values, fmt="{:.2g}") -> str:
    """``a to b``, or ``a`` when the two print the same."""
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return lo if lo == hi else f"{lo} to {hi}"


def newton_bench_sentence(bench: dict) -> str:
    """Section 8's summary of the benchmark, rendered from benchmarks/results_newton_cpu.json."""
    rows = [x for x in bench["rows"] if x["table"] == "iteration"]
    gain = lambda cell, label: [
        x[f"{label}_before_s"] / x[f"{label}_after_s"] for x in rows if x["cell"] == cell and f"{label}_before_s" in x
    ]
    quasi = [x["quasi_after_over_sequential"] for x in rows]
    newton = [x["newton_after_over_sequential"] for x in rows]
    demo = newton_run(bench["rows"], table="solve", cell="gru", H=2, T=10000)
    solves = [x for x in bench["rows"] if x["table"] == "solve"]
    # the sentence says the sequential scan wins every solve: true of the file, or this fails
    assert all(x[f"{p}_over_sequential"] > 1 for x in solves for p in ("newton", "quasi_newton") if f"{p}_s" in x)
    meta = bench["meta"]
    return (
        f"The time of one iteration with jax.jacfwd's Jacobians over the time with the structure's is "
        f"{newton_span(gain('gru', 'newton'))} (GRU) and {newton_span(gain('lstm', 'newton'))} (LSTM) for Newton, "
        f"{newton_span(gain('lstm', 'quasi'))} for the LSTM's quasi-Newton 2x2 blocks and "
        f"{newton_span(gain('gru', 'quasi'))} for the GRU's quasi-Newton diagonal. "
        f"With the structure, one quasi-Newton iteration costs {newton_span(quasi)} sequential passes and one "
        f"Newton iteration {newton_span(newton, '{:.3g}')}. DEER's demo case (GRU, H = 2, batch 16, T = 10,000) takes "
        f"{demo['sequential_s'] * 1e3:.2g} ms sequentially, {demo['newton_s'] * 1e3:.2g} ms by Newton "
        f"({demo['newton_iterations']} iterations) and {demo['quasi_newton_s'] * 1e3:.2g} ms by quasi-Newton "
        f"({demo['quasi_newton_iterations']} iterations). In all {len(solves)} solves the sequential scan is "
        f"faster than both parallel paths. The machine was shared: load average "
        f"{meta['load_average_at_write'][0]:.1f} on {meta['cpu_count']} cores when the file was written."
    )


def newton_statuses(runs, what: str) -> str:
    """How many runs converged within T, stopped at T unconverged (slow), or diverged."""
    count = lambda s: sum(x["status"] == s for x in runs)
    assert count("converged") + count("not converged") + count("diverged") == len(runs)
    return (
        f"Statuses of the {len(runs)} {what}: {count('converged')} converged within T, "
        f"{count('not converged')} not converged within T (slow), {count('diverged')} diverged."
    )


def newton_figure2_medians(fig2: dict):
    """``(lengths, gains, median count (their count) per (g, T), median lambda_1 per g at the longest T)``."""
    import numpy as np

    runs = fig2["runs"]
    lengths, gains = sorted({x["T"] for x in runs}), sorted({x["g"] for x in runs})
    at = lambda g, T: [x for x in runs if x["g"] == g and x["T"] == T]
    count = {(g, T): float(np.median([x["iterations_their_count"] for x in at(g, T)])) for g in gains for T in lengths}
    lam = {g: float(np.median([x["lambda_1"] for x in at(g, lengths[-1])])) for g in gains}
    return lengths, gains, count, lam


def newton_figure2_shape(fig2: dict):
    """The gains split by how the median count moves with T: ``flat`` (the same at every T, the
    smallest gains), ``between`` (never falls, not flat, not rising at every T), ``growing`` (rises
    at every T, the largest gains).  Fails if the file's counts do not split so."""
    lengths, gains, count, lam = newton_figure2_medians(fig2)
    assert all(lam[a] < lam[b] for a, b in zip(gains, gains[1:]))  # "g <= x" reads as "lambda_1 <= y"
    series = {g: [count[g, T] for T in lengths] for g in gains}
    flat = [g for g in gains if len(set(series[g])) == 1]
    growing = [g for g in gains if all(a < b for a, b in zip(series[g], series[g][1:]))]
    between = [g for g in gains if g not in flat + growing]
    assert flat == gains[: len(flat)] and growing == gains[len(gains) - len(growing) :], (flat, growing)
    assert all(all(a <= b for a, b in zip(series[g], series[g][1:])) for g in between)
    return flat, between, growing


def newton_figure2_sentences(fig2: dict) -> list[str]:
    """Section 8's sentences on Figure 2: statuses; where the median count is flat in T, where it
    barely moves, where it grows at every T; the exponent at T = 10 against T = 300."""
    import numpy as np

    lengths, gains, count, lam = newton_figure2_medians(fig2)
    flat, between, growing = newton_figure2_shape(fig2)
    T, last, first = lengths[-1], gains[-1], growing[0]
    flat_counts = [count[g, lengths[0]] for g in flat]
    runs = fig2["runs"]
    short = {g: float(np.median([x["lambda_1"] for x in runs if x["g"] == g and x["T"] == lengths[0]])) for g in gains}
    assert all(abs(short[g]) > abs(lam[g]) for g in gains)  # "further from 0 at every g"
    after = gains[gains.index(first) + 1]
    assert lam[first] < 0 < lam[after] and T / 3 < 1 / abs(lam[first]) < 3 * T  # "of the order of the longest T"
    assert all(count[g, T] - count[g, lengths[0]] <= 1 for g in between)  # "barely moves"
    middle = " ".join(
        f"At g = {g:.2f} (λ_1 = {lam[g]:+.3f}) it barely moves: {', '.join(f'{count[g, t]:g}' for t in lengths)} "
        f"at T = {', '.join(str(t) for t in lengths)}."
        for g in between
    )
    return [
        newton_statuses(runs, "runs"),
        f"For g ≤ {flat[-1]:.2f} (median λ_1 ≤ {lam[flat[-1]]:+.3f}) the median count is the same at every T "
        f"({newton_span(flat_counts, '{:g}')}). {middle} From g = {first:.2f} (λ_1 = {lam[first]:+.3f}, "
        f"1/|λ_1| ≈ {1 / abs(lam[first]):.0f}) up it grows at every T, to {count[last, T]:g} at g = {last:.2f} "
        f"(λ_1 = {lam[last]:+.3f}) and T = {T}.",
        f"At g = {first:.2f} the exponent's time scale 1/|λ_1| is of the order of the longest T run, and "
        f"from g = {after:.2f} (λ_1 = {lam[after]:+.3f}) "
        f"the exponent is positive: at T ≤ {T} the count grows with T on both sides of 0, so these lengths cannot "
        "separate a slightly negative exponent (predictable) from a slightly positive one (chaotic).",
        f"At every g the median λ_1 at T = {lengths[0]} lies further from 0 than at T = {T} "
        f"({short[gains[0]]:+.3f} against {lam[gains[0]]:+.3f} at g = {gains[0]:g}, {short[first]:+.3f} against "
        f"{lam[first]:+.3f} at g = {first:.2f}).",
    ]


def newton_models_sentences(r: dict, T: int = 1000) -> list[str]:
    """Section 8's sentences on the main job's models: statuses, ParaRNN's equal counts, the dense
    cells' counts on both paths at T, and quasi-ELK against quasi-DEER."""
    import numpy as np

    runs = r["runs"]
    key = lambda x: (x["model"], x["seed"], x["T"], x["phase"])
    by = {(key(x), x["method"]): x["iterations"] for x in runs}
    para = [x for x in runs if x["model"] in ("paragru", "paralstm") and x["method"] == "newton"]
    assert all(by[key(x), "quasi_newton"] == x["iterations"] for x in para)
    para_counts = [x["iterations"] for x in para]
    dense = [m for m in r["config"]["models"] if m not in ("paragru", "paralstm")]
    at = lambda m, phase, method, T=T: [
        x["iterations"] for x in runs if (x["model"], x["phase"], x["method"], x["T"]) == (m, phase, method, T)
    ]
    med = lambda *a, **k: float(np.median(at(*a, **k)))
    rows = [(m, phase) for m in dense for phase in ("init", "trained")]
    quasi, newton = [med(*row, "quasi_newton") for row in rows], [med(*row, "newton") for row in rows]
    shorter = min(r["config"]["model_lengths"])
    fewer = [(m, phase) for m, phase in rows if med(m, phase, "quasi_newton") < med(m, phase, "newton")]
    # "only at T": the same rows at the shorter T do not have quasi-Newton ahead
    assert not any(med(m, p, "quasi_newton", shorter) < med(m, p, "newton", shorter) for m, p in rows)
    fewer_text = " and ".join(
        f"the {phase} {m} at T = {T:,} (median of {len(at(m, phase, 'newton'))} seeds: "
        f"{med(m, phase, 'quasi_newton'):g} against {med(m, phase, 'newton'):g}; min–max "
        f"{min(at(m, phase, 'quasi_newton'))}–{max(at(m, phase, 'quasi_newton'))} against "
        f"{min(at(m, phase, 'newton'))}–{max(at(m, phase, 'newton'))}), not at T = {shorter:,} "
        f"({med(m, phase, 'quasi_newton', shorter):g} against {med(m, phase, 'newton', shorter):g})"
        for m, phase in fewer
    )
    every = [
        (m, phase, T)
        for m in r["config"]["models"]
        for phase in ("init", "trained")
        for T in r["config"]["model_lengths"]
    ]
    assert all(med(m, phase, "quasi_elk", T) >= med(m, phase, "quasi_newton", T) for m, phase, T in every)
    lengths = " and ".join(f"{t:,}" for t in r["config"]["model_lengths"])
    return [
        newton_statuses(runs, "runs"),
        f"ParaGRU and ParaLSTM take the same number of iterations on both paths in every run "
        f"({newton_span(para_counts, '{:g}')}).",
        f"For the dense cells ({', '.join(dense)}) at T = {T:,} the median quasi-Newton count is "
        f"{newton_span(quasi, '{:g}')} against Newton's {newton_span(newton, '{:g}')}"
        + (f"; quasi-Newton needs fewer only for {fewer_text}." if fewer else "."),
        "quasi-ELK with sigmasq 1e2 (elk's Fig. 4 value) needs at least as many iterations as quasi-Newton "
        f"in every row (medians of {len(r['config']['seeds'])} seeds, T = {lengths}).",
    ]


def newton_pararnn_sentence(r: dict) -> str:
    """Section 8's line on ParaRNN's solver budget: our count on their cells against their max_its = 3."""
    newton = [x for x in r["runs"] if x["model"] in ("paragru", "paralstm") and x["method"] != "quasi_elk"]
    counts = {x["iterations"] for x in newton}
    assert counts == {3}, counts  # the sentence says they match the authors' fixed budget of 3
    tol = f"{r['config']['tol']:.0e}".replace("e-0", "e-")
    return (
        f"Ours take {newton_span(sorted(counts), '{:g}')} linear solves to our residual ≤ {tol} (float64, from "
        "zeros), the same as the fixed budget of ParaRNN's solver (`max_its = 3`)."
    )


def newton_elk_sentence(r: dict) -> str:
    """Section 8's sentence on the ELK case, rendered from results/parallel_newton.json."""
    verb = {"converged": "converges in", "diverged": "diverges after", "not converged": "has not converged after"}
    labels = [x["solver"] for x in r["elk"]]
    assert labels[0] == "quasi-DEER" and "clipped" in labels[1], labels
    assert "sigmasq 1e2" in labels[2] and labels[3].endswith("sigmasq 1"), labels

    def said(x):
        if x["status"] == "converged" and x["iterations"] == x["T"]:
            return f"converges only at the cap T = {x['T']}, as many iterations as steps"
        return f"{verb[x['status']]} {x['iterations']} iterations"

    deer, clipped, fig4, tuned = r["elk"]
    assert deer["status"] == "diverged" and deer["residual"] >= 0.9e8  # at DEER's clip
    return (
        f"At T = {deer['T']} (the cap) and λ_1 = {deer['lambda_1']:+.2f}: quasi-DEER {said(deer)}; with its "
        f"Jacobians clipped to [−1, 1] it {said(clipped)}; quasi-ELK with sigmasq 1e2, the value of elk's Fig. 4 "
        f"experiment, {said(fig4)}; with sigmasq 1, tried after 1e2 failed, it {said(tuned)}."
    )


def newton_training_sentences(r: dict) -> list[str]:
    """Section 8's sentences on training on the parallel paths."""
    import numpy as np

    from rnnlab.data.synthetic import adding_problem_baseline_mse

    training, steps = r["training"], r["config"]["parallel_steps"]
    assert all(len(x["losses"]) == steps for x in training)
    worst = max(x["max_loss_difference"] for x in training)
    per_step = lambda model, warm: float(
        np.median(
            [
                max(i)
                for x in training
                if (x["model"], x["path"], x["warm_start"]) == (model, "quasi_newton", warm)
                for i in x["iterations"]
            ]
        )
    )
    models = r["config"]["parallel_models"]
    warm = " and ".join(f"{per_step(m, False):g} to {per_step(m, True):g} ({m})" for m in models)
    baseline = adding_problem_baseline_mse()
    lowest = {m: min(min(x["losses"]) for x in training if x["model"] == m) for m in models}
    assert all(v > baseline for v in lowest.values())  # "no learning shown"
    return [
        f"Over the {steps} steps the loss on every parallel path stays within {worst:.1e} of the sequential path's.",
        f"Warm-starting quasi-Newton from the previous step's trajectory changes the median iterations per step "
        f"from {warm}.",
        f"No step's loss reaches the adding problem's memoryless reference (always predicting 1: "
        f"{baseline:.3f}); the lowest is "
        + " and ".join(f"{v:.2f} ({m})" for m, v in lowest.items())
        + f": {steps} steps show that the paths agree, not that the model learns.",
    ]


def newton_readme_sentence(fig2: dict) -> str:
    """The README's Newton sentence: the Figure 2 medians at the longest T for the smallest and largest g,
    and how the count moves with T (as section 8 says it)."""
    lengths, gains, count, lam = newton_figure2_medians(fig2)
    flat, between, growing = newton_figure2_shape(fig2)
    T = lengths[-1]
    middle = "".join(
        f", nearly so at g = {g:.2f} ({', '.join(f'{count[g, t]:g}' for t in lengths)} at T = "
        f"{', '.join(str(t) for t in lengths)})"
        for g in between
    )
    return (
        f"at T = {T} DEER takes a median {count[gains[0], T]:g} iterations (their count: linear solves + 1) "
        f"at g = {gains[0]:g} (λ_1 = {lam[gains[0]]:+.2f}) and {count[gains[-1], T]:g} at g = {gains[-1]:g} "
        f"(λ_1 = {lam[gains[-1]]:+.2f}); the count is the same at every T for g ≤ {flat[-1]:.2f} "
        f"(λ_1 ≤ {lam[flat[-1]]:+.2f}){middle}, and grows with every T from g = {growing[0]:.2f} "
        f"(λ_1 = {lam[growing[0]]:+.3f}) up, where T ≤ {T} cannot tell a predictable from a chaotic exponent"
        + ("; every run converged within T" if {x["status"] for x in fig2["runs"]} == {"converged"} else "")
    )


def newton_claims_row(fig2: dict) -> str:
    """The claims-at-a-glance row on the predictability paper, rendered from results/newton_figure2.json."""
    lengths, gains, count, lam = newton_figure2_medians(fig2)
    flat, between, growing = newton_figure2_shape(fig2)
    T = lengths[-1]
    seeds = len({x["seed"] for x in fig2["runs"]})
    statuses = {x["status"] for x in fig2["runs"]}
    every = "every run converged within T" if statuses == {"converged"} else "not every run converged"
    middle = "".join(
        f"{', '.join(f'{count[g, t]:g}' for t in lengths)} at g = {g:.2f} (λ_1 = {lam[g]:+.3f}), " for g in between
    )
    return (
        f"T ≤ {T} only: their setting and {seeds} seeds (our statistic: the median count against the median "
        f"λ_1 at T = {T}; their plot: the mean against λ_1 at T = {lengths[0]}): DEER's median count (their count: "
        f"linear solves + 1) the same at every T for g ≤ {flat[-1]:.2f} (λ_1 ≤ {lam[flat[-1]]:+.3f}; "
        f"{count[gains[0], T]:g} at g = {gains[0]:g}), {middle}growing with every T from g = {growing[0]:.2f} "
        f"(λ_1 = {lam[growing[0]]:+.3f}) up ({count[gains[-1], T]:g} at g = {gains[-1]:g}, T = {T}); {every}"
    )


def test_the_newton_section_and_paragraph():
    """reproductions.md section 8, its claims row and the README quote results/newton_figure2.json,
    results/parallel_newton.json and the benchmark."""
    fig2, r = results("newton_figure2"), results("parallel_newton")
    bench = json.loads((ROOT / "benchmarks" / "results_newton_cpu.json").read_text())
    text = (ROOT / "docs" / "reproductions.md").read_text()
    section = text[text.index("## 8.") : text.index("## 9.")]
    tables = (
        newton_figure2_table(fig2),
        newton_models_table(r),
        newton_training_table(r),
        newton_elk_table(r),
        newton_iteration_table(bench),
        newton_solve_table(bench),
    )
    for table in tables:
        assert table in section, (
            f"reproductions.md section 8 does not hold the table rendered from its results:\n{table}"
        )
    sentences = (
        newton_figure2_sentences(fig2)
        + newton_models_sentences(r)
        + newton_training_sentences(r)
        + [newton_pararnn_sentence(r), newton_elk_sentence(r), newton_bench_sentence(bench)]
    )
    missing = [s for s in sentences if flowing(s) not in flowing(section)]
    assert not missing, f"section 8 does not say (or no longer says) what its results hold: {missing}"
    assert flowing(newton_claims_row(fig2)) in flowing(text[: text.index("## 1.")]), "the claims row on Figure 2"
    assert_quoted(newton_readme_sentence(fig2))
    worst = max(x["max_loss_difference"] for x in r["training"])
    cfg = r["config"]
    assert_quoted(
        f"follows the sequential loss curve within {worst:.1e} (a consistency check: one seed, "
        f"{'/'.join(zoo_label(m) for m in cfg['parallel_models'])}, T = {cfg['parallel_length']}, float32, "
        f"{cfg['parallel_steps']} steps)"
    )


def zoo_label(name: str) -> str:
    return {"gru": "GRU", "paragru": "ParaGRU"}[name]


def copy_fair_table(r: dict) -> str:
    """docs/reproductions.md section 6's fair T = 1000 table, rendered from copy_memory_T1000_fair.json."""
    rates = "/".join(f"{lr:g}" for lr in r["learning_rates"])
    lines = [
        f"| model | H | parameters | learning rate chosen (of {rates}) | held-out loss per step "
        f"(baseline {r['baseline']:.4f}) | recall cross-entropy (memoryless {r['recall_baseline']:.3f}) | "
        f"recall accuracy (chance {r['recall_chance_accuracy']:.3f}) | training time (this CPU) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for v, about in r["variants"].items():
        lines.append(
            f"| {about['label']} (`{v}`) | {r['hidden'][v]} | {r['parameters'][v]:,} | {r['chosen_learning_rate'][v]:g} | "
            f"{r['final_loss'][v]['median']:.3g} | {r['recall_loss'][v]['median']:.3g} | "
            f"{r['recall_accuracy'][v]['median']:.3f} | {r['wall_time_s'][v] / 60:.0f} min |"
        )
    return "\n".join(lines)


def test_the_fair_copy_comparison_table():
    r = results("copy_memory_T1000_fair")
    table = copy_fair_table(r).splitlines()
    lines = [line.strip() for line in (ROOT / "docs" / "reproductions.md").read_text().splitlines()]
    at = lines.index(table[0]) if table[0] in lines else -1
    assert lines[at : at + len(table)] == table, "section 6 lacks the fair table:\n" + "\n".join(table)
    assert r["steps"] == 600 and r["batch_size"] == 32 and len(set(r["parameters"])) == 6
    # the parameter-matched LSTM is within 5% of the LRU's parameters
    assert abs(r["parameters"]["lstm"] / r["parameters"]["lru"] - 1) < 0.05
    loss = lambda v: f"{r['final_loss'][v]['median']:.3g}"
    recall = lambda v: f"{r['recall_accuracy'][v]['median']:.3f}"
    assert_quoted(
        f"the 150-unit LSTM ({r['parameters']['lstm']:,} parameters) ends at {loss('lstm')} and the chrono LSTM at "
        f"{loss('lstm_chrono')}, both with recall accuracy {recall('lstm')} after 600 steps",
        f"the LRU ({r['parameters']['lru']:,} parameters) reaches {loss('lru')} with recall accuracy {recall('lru')}",
        f"({loss('lru_ring_0_1')}, recall accuracy {recall('lru_ring_0_1')}, chance 0.125)",
        f"{round(sum(r['wall_time_s'].values()) / 60)} minutes here",
    )
    assert r["recall_accuracy"]["lstm_chrono"]["median"] == r["recall_accuracy"]["lstm"]["median"]  # "both"


def test_the_fair_copy_comparison_withdraws_the_lstm_rows_and_quotes_the_benchmarks_lstm():
    """Section 6 withdraws the LSTM rows: every number of that paragraph from the file, and the
    reasons it gives (the grid's edge, one seed, no clipping, the recall steps' share of the loss)."""
    r = results("copy_memory_T1000_fair")
    T, recall_steps = r["length"], 10
    positions = T + 2 * recall_steps
    loss, recall = r["final_loss"], r["recall_loss"]
    # the baseline is the memoryless strategy's loss per step: 10 answer steps at ln 8 over T + 20 positions
    assert r["baseline"] == pytest.approx(recall_steps * r["recall_baseline"] / positions, rel=1e-6)
    for v in ("lstm", "lstm_chrono"):
        assert loss[v]["median"] > r["baseline"] and recall[v]["median"] > r["recall_baseline"]
    share = lambda v: recall_steps * recall[v]["median"] / positions / loss[v]["median"]
    assert r["chosen_learning_rate"]["lstm"] == min(r["learning_rates"]) and r["seeds"] == 1 and r["clip"] == "off"
    section = flowing((ROOT / "docs" / "reproductions.md").read_text())
    fragments = [
        f"the 150-unit LSTM ends at a held-out {loss['lstm']['median']:.3g} and the chrono LSTM at "
        f"{loss['lstm_chrono']['median']:.3g}, both above the baseline {r['baseline']:.4f}",
        f"their recall cross-entropies, {recall['lstm']['median']:.2f} and {recall['lstm_chrono']['median']:.2f}, are "
        f"worse than guessing (ln 8 = {r['recall_baseline']:.3f})",
        f"the LSTM's chosen rate, {r['chosen_learning_rate']['lstm']:g}, is the lowest of the grid",
        f"600 steps of batch 32 ({r['steps'] * r['batch_size']:,} sequences) are "
        f"{r['steps'] * r['batch_size'] / 512_000:.0%} of the expRNN authors'",
        f"The answer steps are 10 of the {positions} positions ({recall_steps / positions:.0%}), but they carry "
        f"{share('lstm'):.0%} of the LSTM's loss (10 x {recall['lstm']['median']:.2f} / {positions} = "
        f"{recall_steps * recall['lstm']['median'] / positions:.3f} of {loss['lstm']['median']:.3f}) and "
        f"{share('lstm_chrono'):.0%} of the chrono LSTM's",
        f"the LRU with the ring near 1 learns to copy (recall accuracy {r['recall_accuracy']['lru']['median']:.3f}), "
        f"the default ring does not ({r['recall_accuracy']['lru_ring_0_1']['median']:.3f}, chance "
        f"{r['recall_chance_accuracy']:.3f}), and 40 units learn part of it "
        f"({r['recall_accuracy']['lru_H40']['median']:.3f})",
    ]
    sweep = {v: [x["validation_loss"]["median"] for x in r["learning_rate_sweep"][v]] for v in ("lstm_chrono",)}
    assert r["chosen_learning_rate"]["lstm_chrono"] == max(r["learning_rates"])
    fragments.append(
        f"the chrono LSTM's, {max(r['learning_rates']):g}, is the highest, with validation losses "
        + ", ".join(f"{v:.3g}" for v in sweep["lstm_chrono"])
    )
    lru = results("copy_memory_T1000_lru")
    assert r["final_loss"]["lru"]["per_seed"][0] == lru["final_loss"]["lru"]["1000"]["per_seed"][0]  # "repeats seed 0"
    probe = results("copy_memory_lstm_probe_T100")
    above = probe["final_loss"]["lstm"]["100"]["median"] / probe["baseline"]["100"] - 1
    fragments.append(
        f"end {above:.0%} above the memoryless loss ({probe['final_loss']['lstm']['100']['median']:.3g} against "
        f"{probe['baseline']['100']:.4f}"
    )
    missing = [f for f in fragments if flowing(f) not in section]
    assert not missing, f"section 6 does not say (or no longer says) what its results hold: {missing}"
    assert "recall none" not in flowing(README) and "recalls none" not in section.replace('"recall none"', "")
    # the benchmark's LSTM on the copy task (T = 50) learned the memoryless strategy and no more, as
    # section 6 says: every seed reached the reference (fitted on training data), its recall is chance
    bench = results("benchmark")
    copy_task = next(t for t in bench["tasks"] if t.startswith("copy:"))
    lstm, reference = bench["pairs"][copy_task]["lstm"], bench["tasks"][copy_task]["memoryless"]["test"]
    reached = lstm["steps_to_memoryless"]
    assert None not in reached  # every seed reached it
    said = (
        f"stops at T = {copy_task.split('=')[1]} for the copy task, where in {int(bench['config']['budget'])} "
        f"sequences the {bench['config']['params']}-parameter LSTM reaches the memoryless reference (every seed, "
        f"median step {sorted(reached)[len(reached) // 2]} of {bench['protocol']['steps']}) but recalls at chance "
        f"({lstm['test_selected']['median']:.3f} against the reference's {reference['accuracy']:.3f})"
    )
    assert flowing(said) in section, said


def linear_gradient_table() -> str:
    """docs/reproductions.md section 6's gradient table at T = 500, rendered from the three committed runs:
    the ratio at init / trained, max |λ| and its log (the LRU's exact rate), the exact finite-time λ1(T),
    the QR estimate and the fitted decay, all at initialisation."""
    rows = [
        ("LSTM, forget bias 1", "vanishing_gradients_linear", "lstm"),
        ("LRU, ring [0, 1] (the code's default)", "vanishing_gradients_linear", "lru"),
        ("LRU, ring [0.9, 0.999] (sCIFAR's)", "vanishing_gradients_lru_ring", "lru"),
        ("LRU, ring [0.999, 0.9999] (PathX's radii)", "vanishing_gradients_lru_ring_copy", "lru"),
        ("minGRU", "vanishing_gradients_linear", "mingru"),
        ("minLSTM", "vanishing_gradients_linear", "minlstm"),
    ]
    lines = [
        "| model | init | trained | max \\|λ\\| | ln max \\|λ\\| | λ1(T), exact | QR estimate of λ1 | gradient decay per step |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, name, model in rows:
        r = results(name)
        ratio, lyap = r["ratios"][model]["500"], r["lyapunov"][model]["500"]["init"]
        radius = r["spectral_radii"][model]["500"]["init"] if model == "lru" else None
        modulus = f"{radius[0]:.6g} | {math.log(radius[0]):.5f}" if radius else " | "
        lines.append(
            f"| {label} | {e1(ratio['init']['median'])} | {e1(ratio['trained']['median'])} | {modulus} | "
            f"{lyap['finite_time_exponent']:.5f} | {lyap['exponent']:.5f} | {lyap['gradient_decay']:.5f} |"
        )
    return "\n".join(lines)


def test_the_linear_gradient_table_and_the_exact_exponent():
    """The exact λ1(T) of an LRU is ln max |λ| (within 5%, in fact to rounding); the QR estimate is not."""
    table = linear_gradient_table().splitlines()
    lines = [line.strip() for line in (ROOT / "docs" / "reproductions.md").read_text().splitlines()]
    at = lines.index(table[0]) if table[0] in lines else -1
    assert lines[at : at + len(table)] == table, "section 6 lacks the gradient table:\n" + "\n".join(table)
    for name in ("vanishing_gradients_linear", "vanishing_gradients_lru_ring", "vanishing_gradients_lru_ring_copy"):
        r = results(name)
        exact = math.log(r["spectral_radii"]["lru"]["500"]["init"][0])
        assert r["lyapunov"]["lru"]["500"]["init"]["finite_time_exponent"] == pytest.approx(exact, rel=0.05)


def pixel_table(r: dict) -> str:
    """docs/reproductions.md section 9's table of one MNIST-1D run, rendered from its results file."""
    lines = [
        "| model | readout | H | parameters | steps, batch, optimiser | test accuracy, median [q25, q75] | training time |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in r["models"].items():
        acc = r["test_accuracy"][name]
        lines.append(
            f"| {m['label']} (`{name}`) | {m['readout'].split(':')[0]} | {m['hidden']} | {m['parameters']:,} | "
            f"{m['steps']}, {m['batch_size']}, {m['optimizer']} {m['learning_rate']:g} | "
            f"{acc['median']:.3f} [{acc['q25']:.3f}, {acc['q75']:.3f}] | {r['wall_time_s'][name]:.0f} s |"
        )
    return "\n".join(lines)


@pytest.mark.parametrize("name", ["pixel_mnist1d", "pixel_mnist1d_shuffled"])
def test_the_mnist1d_tables(name):
    r = results(name)
    table = pixel_table(r).splitlines()
    lines = [line.strip() for line in (ROOT / "docs" / "reproductions.md").read_text().splitlines()]
    cited = next((i for i, line in enumerate(lines) if f"(results/{name}.json)" in line), len(lines))
    at = lines.index(table[0], cited) if table[0] in lines[cited:] else -1
    assert lines[at : at + len(table)] == table, f"section 9 lacks the table of {name}:\n" + "\n".join(table)
    gru = r["test_accuracy"]["mnist1d_gru"]["median"]
    published = r["published"]["GRU (bidirectional, 6 units, flattened readout)"]
    source = "the authors'" if name == "pixel_mnist1d" else "the README's"
    said = f"{gru:.3f} against {source} {published:.0%}"
    assert flowing(said) in flowing((ROOT / "docs" / "reproductions.md").read_text()), said


# section 9's runs of the MNIST-1D authors' GRU under their protocol (6000 steps, tested every 250): the readout
# drawn as the authors' torch.nn.Linear draws it is the primary configuration; Flax's LeCun draw is our default
MNIST1D_PROTOCOL = (
    "pixel_mnist1d_authors_protocol",
    "pixel_mnist1d_authors_protocol_torch_readout",
    "pixel_mnist1d_shuffled_authors_protocol",
    "pixel_mnist1d_shuffled_authors_protocol_torch_readout",
)
READOUT_INITS = {
    "pytorch": "`torch.nn.Linear`: U(±1/√fan_in), the authors' draw",
    "lecun": "Flax `Dense`: LeCun normal, zero bias (our default, not the authors')",
}
# the six tests the authors' notebook prints, every 1000 steps: the only ones their runs and ours share
PRINTED_STEPS = [str(k) for k in range(1000, 7000, 1000)]
FIRST, RERUN = "2020 (d18aed1)", "2024 rerun (9e0b8f1)"
AUTHORS_RUNS = {
    FIRST: "the authors' 2020 run (d18aed1), seed 42",
    RERUN: "the authors' 2024 rerun (9e0b8f1), its initial weights not seeded",
}


def spread(values: list) -> str:
    """A test accuracy over seeds: ``median [lowest, highest]``."""
    return f"{statistics.median(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def mnist1d_run(name: str) -> dict:
    """One protocol run, per seed: the test at step 1000, the peak of the six printed tests, the final test."""
    r = results(name)
    m, curve = r["models"]["mnist1d_gru"], r["test_curve"]["mnist1d_gru"]
    assert (r["config"]["eval_every"], m["steps"], r["config"]["models"]) == (250, 6000, ["mnist1d_gru"])
    assert list(curve["by_step"]) == [str(k) for k in range(250, 6250, 250)]
    at = {step: curve["by_step"][step]["per_seed"] for step in PRINTED_STEPS}
    assert all(curve["by_step"][step]["median"] == statistics.median(at[step]) for step in PRINTED_STEPS)
    return {
        "order": r["dataset"]["order"],
        "init": m["readout_init"],
        "published": r["published_runs"],
        "1000": at["1000"],
        "peak": [max(seed) for seed in zip(*at.values())],
        "6000": at["6000"],
    }


def their_two(run: dict, column: str) -> list:
    """The authors' two runs in one column (step 1000, peak of the six printed, final), lower first."""
    pick = lambda at: max(at[s] for s in PRINTED_STEPS) if column == "peak" else at[column]
    return sorted(pick(at) for at in run["published"].values())


def mnist1d_protocol_table() -> str:
    """Section 9's table: step 1000, the six-test peak and the final test of each run, beside the authors' two."""
    lines = [
        "| order | readout's initial draw | step 1000 | peak of the six tests at steps 1000 to 6000 | "
        "step 6000 (final) | source |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    ours = lambda name, run: (
        f"| {run['order']} | {READOUT_INITS[run['init']]} | {spread(run['1000'])} | {spread(run['peak'])} | "
        f"{spread(run['6000'])} | [results](results/{name}.json), {len(run['6000'])} seeds |"
    )
    for lecun, torch in (MNIST1D_PROTOCOL[:2], MNIST1D_PROTOCOL[2:]):
        run = mnist1d_run(torch)
        assert run["init"] == "pytorch" and mnist1d_run(lecun)["init"] == "lecun"
        lines.append(ours(torch, run))
        for who, at in run["published"].items():
            lines.append(
                f"| {run['order']} | {READOUT_INITS['pytorch']} | {at['1000']:.3f} | "
                f"{max(at[s] for s in PRINTED_STEPS):.3f} | {at['6000']:.3f} | {AUTHORS_RUNS[who]} |"
            )
        lines.append(ours(lecun, mnist1d_run(lecun)))
    return "\n".join(lines)


def test_mnist1d_under_the_authors_protocol():
    """Section 9: the table, the verdicts (which follow from the numbers) and the claims row, from the files."""
    text = (ROOT / "docs" / "reproductions.md").read_text()
    table = mnist1d_protocol_table().splitlines()
    lines = [line.strip() for line in text.splitlines()]
    at = lines.index(table[0]) if table[0] in lines else -1
    assert lines[at : at + len(table)] == table, "section 9 lacks the protocol table:\n" + "\n".join(table)
    seq_lecun, seq, shuf_lecun, shuf = (mnist1d_run(n) for n in MNIST1D_PROTOCOL)
    med = statistics.median
    f3 = lambda values: f"{med(values):.3f}"
    three = lambda run: (f3(run["1000"]), f3(run["peak"]), f3(run["6000"]))
    pts = lambda a, b: f"{100 * (a - b):.1f}"
    pct = lambda v: f"{100 * v:.1f}"
    printed = lambda at: ", ".join(pct(at[s]) for s in PRINTED_STEPS)
    pair = lambda two: f"{two[0]:.3f} and {two[1]:.3f}"
    # sequential: between the authors' two runs at step 1000, below both at the six-test peak and at the end
    seq_theirs = {c: their_two(seq, c) for c in ("1000", "peak", "6000")}
    assert seq_theirs["1000"][0] < med(seq["1000"]) < seq_theirs["1000"][1]
    assert med(seq["peak"]) < seq_theirs["peak"][0] and med(seq["6000"]) < seq_theirs["6000"][0]
    below = [a for a in seq["6000"] if a < seq_theirs["6000"][0]]
    above = [a for a in seq["6000"] if a > seq_theirs["6000"][1]]
    assert len(below) + len(above) == len(seq["6000"]) and len(above) == 1
    assert med(seq_lecun["6000"]) < seq_theirs["6000"][0] and med(seq_lecun["peak"]) < seq_theirs["peak"][0]
    # shuffled: between the authors' two runs in every column; the README's 57% is the 2020 run's step-1000 test
    shuf_theirs = {c: their_two(shuf, c) for c in ("1000", "peak", "6000")}
    assert all(shuf_theirs[c][0] < med(shuf[c]) < shuf_theirs[c][1] for c in shuf_theirs)
    assert shuf["published"][FIRST]["1000"] == shuf_theirs["1000"][1]
    # the readout's two draws: the medians' largest move, and the seeds' ranges overlap in every column
    moved = 0.0
    for ours, torch in ((seq_lecun, seq), (shuf_lecun, shuf)):
        for column in ("1000", "peak", "6000"):
            a, b = ours[column], torch[column]
            moved = max(moved, abs(round(med(a) - med(b), 6)))
            assert max(a) >= min(b) and max(b) >= min(a)
    old = results("pixel_mnist1d_shuffled")["test_accuracy"]["mnist1d_gru"]["per_seed"]
    said = [
        f"sequential `test_acc` {printed(seq['published'][FIRST])} at steps 1000 to 6000; shuffled "
        f"{printed(shuf['published'][FIRST])}",
        f"{printed(seq['published'][RERUN])} sequential and {printed(shuf['published'][RERUN])} shuffled",
        f"the GRU reaches {f3(seq['1000'])} at step 1000, between their two runs ({pair(seq_theirs['1000'])}), "
        f"but {f3(seq['peak'])} at the peak of the six tests and {f3(seq['6000'])} at the end, below both of "
        f"their runs at each (their peaks {pair(seq_theirs['peak'])}, their final tests {pair(seq_theirs['6000'])}): "
        f"{pts(seq_theirs['6000'][0], med(seq['6000']))} to {pts(seq_theirs['6000'][1], med(seq['6000']))} points "
        f"below at the end, {pts(seq_theirs['peak'][0], med(seq['peak']))} to "
        f"{pts(seq_theirs['peak'][1], med(seq['peak']))} at the peak",
        f"{len(below)} of the {len(seq['6000'])} seeds end below both ({min(below):.3f} to {max(below):.3f}), "
        f"{len(above)} above both ({above[0]:.3f})",
        "**Shuffled: reproduced.** {} at step 1000, {} at the peak of the six tests and {} at the end".format(
            *three(shuf)
        )
        + ", each between the authors' two runs ({}; {}; {})".format(*(pair(shuf_theirs[c]) for c in shuf_theirs)),
        f"the {pts(shuf_theirs['1000'][1], med(shuf['1000']))} points between it and our median at step 1000 are "
        f"inside the {pts(*shuf_theirs['1000'][::-1])}-point spread between their two runs",
        f"its seeds scored {', '.join(f'{a:.3f}' for a in old)}",
        "the shuffled GRU reaches {}, {} and {} with torch's draw".format(*three(shuf))
        + " against {}, {} and {} with Flax's".format(*three(shuf_lecun)),
        "sequential {}, {} and {}".format(*three(seq)) + " against {}, {} and {}".format(*three(seq_lecun)),
        f"No median moves by more than {100 * moved:.1f} points",
        f"with Flax's draw the sequential GRU ends at {f3(seq_lecun['6000'])}, also below both of the authors' runs",
    ]
    claims = (
        f"sequential {f3(seq['1000'])} at step 1000, {f3(seq['peak'])} peak, {f3(seq['6000'])} final, "
        f"{pts(seq_theirs['6000'][0], med(seq['6000']))} to {pts(seq_theirs['6000'][1], med(seq['6000']))} points "
        f"below both of the authors' runs ({pair(seq_theirs['6000'])}): close, not reproduced; shuffled "
        "{}, {}, {}".format(*three(shuf))
        + f", each between the authors' two runs ({pair(shuf_theirs['1000'])} at step 1000): reproduced"
    )
    missing = [s for s in [*said, claims] if flowing(s) not in flowing(text)]
    assert not missing, f"section 9 does not say what the files hold: {missing}"
    row = next(line for line in lines if line.startswith("| MNIST-1D (Greydanus 2020"))
    assert flowing(claims) in flowing(row) and "| **partly** |" in row


def test_the_lstm_probe_table():
    """Section 6's LSTM at T = 100, 200, 500 with the fair comparison's budget, from its three files."""
    text = [line.strip() for line in (ROOT / "docs" / "reproductions.md").read_text().splitlines()]
    for T in (100, 200, 500):
        r = results(f"copy_memory_lstm_probe_T{T}")
        assert (r["steps"], r["batch_size"], r["learning_rates"], r["hidden"]["lstm"]) == (600, 32, [1e-3], 150)
        row = (
            f"| {T} | {r['baseline'][str(T)]:.4f} | {r['final_loss']['lstm'][str(T)]['median']:.3g} | "
            f"{r['recall_loss']['lstm'][str(T)]['median']:.3g} | {r['recall_accuracy']['lstm'][str(T)]['median']:.3f} | "
            f"[results](results/copy_memory_lstm_probe_T{T}.json) |"
        )
        assert row in text, row


def test_the_readme_paragraph_on_real_data_and_the_fair_copy_task():
    seq, shuf = (mnist1d_run(n) for n in MNIST1D_PROTOCOL[1::2])
    fair = results("copy_memory_T1000_fair")
    f3 = lambda values: f"{statistics.median(values):.3f}"
    low, high = their_two(seq, "6000")
    gap = lambda theirs: f"{100 * (theirs - statistics.median(seq['6000'])):.1f}"
    two = their_two(shuf, "1000")
    assert two[1] == shuf["published"][FIRST]["1000"] and round(two[1], 2) == 0.57  # the README's 57%
    answers = fair["config"]["test_size"] * 10  # 10 answer steps per test sequence
    missed = round((1 - fair["recall_accuracy"]["lru"]["median"]) * answers)
    assert missed == 1  # "all but one"
    assert_quoted(
        f"ends at {f3(seq['6000'])} test accuracy (median of {len(seq['6000'])} seeds), {gap(low)} to {gap(high)} "
        f"points below both of the authors' runs ({low:.3f} and {high:.3f}): close, not reproduced; on the shuffled "
        f"variant {f3(shuf['1000'])} at step 1000 and {f3(shuf['6000'])} at the end, between their two runs "
        f"({two[0]:.3f} and {two[1]:.3f} at step 1000, the latter the test that matches their README's 57%)",
        f"recalls all but one of {answers} test symbols (recall accuracy {fair['recall_accuracy']['lru']['median']:.3f})",
        f"recalls at chance ({fair['recall_accuracy']['lru_ring_0_1']['median']:.3f})",
        "the parameter-matched LSTMs of that run never reached the memoryless reference in its 600 steps",
    )
    assert all(fair["final_loss"][v]["median"] > fair["baseline"] for v in ("lstm", "lstm_chrono"))  # "never reached"
