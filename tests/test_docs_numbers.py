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


def newton_iterations(run, config) -> str:
    """Iterations to tolerance, or ``> cap`` when it was not reached."""
    cap = config["max_iter"] if run["method"] == "newton" else config["quasi_max_iter"]
    return str(run["iterations"]) if run["converged"] else f"> {cap}"


def newton_tables(r: dict) -> tuple[str, str]:
    """docs/reproductions.md section 8's two tables, rendered from results/parallel_newton.json."""
    runs, config = r["runs"], r["config"]
    lengths = sorted({x["T"] for x in runs if x["model"] == "tanh"})
    radii = sorted({x["radius"] for x in runs if x["model"] == "tanh"})
    span = " / ".join(f"{T:,}" for T in lengths)
    lines = [f"| ρ | λ_1 at T = {span} | Newton, T = {span} | quasi-Newton, T = {span} |", "| --- | --- | --- | --- |"]
    for rho in radii:
        at = lambda T, method: newton_run(runs, model="tanh", radius=rho, T=T, method=method)
        lam = " / ".join(f"{at(T, 'newton')['lambda_1']:.2f}" for T in lengths)
        its = [" / ".join(newton_iterations(at(T, m), config) for T in lengths) for m in ("newton", "quasi_newton")]
        lines.append(f"| {rho:g} | {lam} | {its[0]} | {its[1]} |")
    models = ["| model | phase | λ_1 | Newton | quasi-Newton |", "| --- | --- | --- | --- | --- |"]
    for name in config["models"]:
        for phase in ("init", "trained"):
            at = lambda method: newton_run(runs, model=name, phase=phase, T=1000, method=method)
            models.append(
                f"| {name} | {phase} | {at('newton')['lambda_1']:.2f} | "
                f"{newton_iterations(at('newton'), config)} | {newton_iterations(at('quasi_newton'), config)} |"
            )
    return "\n".join(lines), "\n".join(models)


def newton_quotes(r: dict, bench: dict) -> dict[str, str]:
    """The numbers section 8 and the README quote, by placeholder name."""
    runs, config = r["runs"], r["config"]
    chaos = newton_run(runs, model="tanh", radius=4.0, T=100, method="newton")
    demo = newton_run(bench["rows"], cell="gru", H=2, T=10000)
    timed = [row for row in bench["rows"] if "fused_s" in row]
    ratios = [row[k] for row in timed for k in ("fused_over_newton", "fused_over_quasi_newton") if k in row]
    tanh = lambda rho, method: newton_run(runs, model="tanh", radius=rho, T=10000, method=method)
    sweep = ", ".join(
        f"{newton_iterations(tanh(rho, 'newton'), config)} iterations at λ_1 = {tanh(rho, 'newton')['lambda_1']:.2f}"
        for rho in (0.5, 1.25, 1.7, 1.8)
    )
    quasi = ", ".join(newton_iterations(tanh(rho, "quasi_newton"), config) for rho in (0.5, 1.25, 1.7, 1.8))
    trained = ", ".join(
        f"{name} {newton_run(runs, model=name, phase='trained', T=1000, method='newton')['iterations']}"
        for name in config["models"]
    )
    newton = {(x["model"], x["radius"], x["T"], x["phase"]): x for x in runs if x["method"] == "newton"}
    pairs = [(x, newton[(x["model"], x["radius"], x["T"], x["phase"])]) for x in runs if x["method"] == "quasi_newton"]
    more = [q["iterations"] / n["iterations"] for q, n in pairs if q["converged"] and n["converged"]]
    times = lambda x: f"{x:,.0f}" if x >= 10 else f"{x:.2g}"
    return {
        "QUASI_RATIO": f"between {min(more):.1f} and {max(more):.0f} times as many",
        "CHAOS_LAMBDA": f"{chaos['lambda_1']:.2f}",
        "CHAOS_ERROR": f"{chaos['max_error_vs_sequential']:.2g}",
        "BENCH_SENTENCE": (
            f"DEER's demo case (GRU, H = 2, batch 16, T = 10,000) takes {demo['fused_s'] * 1e3:.2g} ms sequentially, "
            f"{demo['newton_s'] * 1e3:.2g} ms by Newton ({demo['newton_iterations']} iterations) and "
            f"{demo['quasi_newton_s'] * 1e3:.2g} ms by quasi-Newton ({demo['quasi_newton_iterations']} iterations); "
            f"over the {len(timed)} cases timed, the sequential scan runs {times(1 / max(ratios))} to "
            f"{times(1 / min(ratios))} times faster than either parallel path."
        ),
        "README_SWEEP": f"Newton takes {sweep}; quasi-Newton takes {quasi} iterations",
        "README_TRAINED": f"after the main job's training, {trained} Newton iterations at T = 1000",
    }


def test_the_newton_section_and_paragraph():
    """reproductions.md section 8 and the README quote results/parallel_newton.json and the benchmark."""
    r = results("parallel_newton")
    bench = json.loads((ROOT / "benchmarks" / "results_newton_cpu.json").read_text())
    text = (ROOT / "docs" / "reproductions.md").read_text()
    for table in newton_tables(r):
        assert table in text, f"reproductions.md section 8 does not hold the table rendered from its results:\n{table}"
    quotes = newton_quotes(r, bench)
    flowing_text = flowing(text)
    for key in ("QUASI_RATIO", "CHAOS_LAMBDA", "CHAOS_ERROR", "BENCH_SENTENCE"):
        assert flowing(quotes[key]) in flowing_text, f"reproductions.md section 8 does not say {quotes[key]!r}"
    assert_quoted(quotes["README_SWEEP"], quotes["README_TRAINED"])


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
    seq, shuf, fair = results("pixel_mnist1d"), results("pixel_mnist1d_shuffled"), results("copy_memory_T1000_fair")
    acc = lambda r: f"{r['test_accuracy']['mnist1d_gru']['median']:.3f}"
    assert_quoted(
        f"reaches {acc(seq)} test accuracy against their 91% (median of 3 seeds; {acc(shuf)} against their 57% on the shuffled variant)",
        f"recalls every symbol (recall accuracy {fair['recall_accuracy']['lru']['median']:.3f})",
        f"recalls at chance ({fair['recall_accuracy']['lru_ring_0_1']['median']:.3f})",
    )
    assert fair["recall_accuracy"]["lstm"]["median"] == fair["recall_accuracy"]["lstm_chrono"]["median"] == 0  # "none"
