"""The four applications: each script's --quick run writes its results and figures
and shows real learning; decoding checked against independent references."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_script

from rnnlab import RNN, GRUCell, LSTMCell
from rnnlab.data import CharVocab
from rnnlab.data.synthetic import POSITIVE, addition_pairs, negation_reviews
from rnnlab.data.text import load_labelled, load_pairs
from rnnlab.decode import beam_search, greedy_decode, sample_text
from rnnlab.linen import LanguageModel, Seq2Seq
from rnnlab.metrics import character_error_rate, confusion_matrix, edit_distance


def run_quick(name, tmp_path, *extra):
    out = tmp_path / name
    results = load_script(name).main(["--quick", "--quiet", "--out", str(out), *extra])
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    assert (out / "config.json").exists() and (out / "metrics.jsonl").exists()
    return out, results


def test_text_generation_learns_and_samples_from_its_checkpoint(tmp_path, capsys):
    out, results = run_quick("text_generation", tmp_path)
    assert (out / "learning_curve.png").stat().st_size > 0
    # the model uses context: far below what a context-free (unigram) model can score
    assert results["val_loss_nats"] < results["unigram_entropy_nats"] - 0.5
    assert results["val_bits_per_char"] == pytest.approx(results["val_loss_nats"] / np.log(2))
    assert len(results["sample"]) == 100
    module = load_script("text_generation")
    a = module.main(["--mode", "sample", "--out", str(out), "--prime", "the ", "--length", "40", "--seed", "3"])
    b = module.main(["--mode", "sample", "--out", str(out), "--prime", "the ", "--length", "40", "--seed", "3"])
    assert a == b and len(a) == 40
    with pytest.raises(ValueError, match="characters not in the vocabulary"):
        module.main(["--mode", "sample", "--out", str(out), "--prime", "\u2603", "--length", "5"])
    with pytest.raises(ValueError, match=r"--top-k must be <= the vocabulary size \d+, got 5000"):
        module.main(["--mode", "sample", "--out", str(out), "--top-k", "5000"])
    with pytest.raises(ValueError, match="--prime holds no chars to start from"):
        module.main(["--mode", "sample", "--out", str(out), "--prime", ""])


def test_sentiment_bidirectional_beats_unidirectional(tmp_path):
    out, results = run_quick("sentiment", tmp_path)
    bi, uni = results["models"]["bi"], results["models"]["uni"]
    assert bi["accuracy"] > 0.9 and bi["accuracy"] > uni["accuracy"] + 0.15
    assert np.sum(bi["confusion_matrix"]) == results["test_examples"]
    assert (out / "sentiment.png").stat().st_size > 0


def test_seq2seq_learns_addition(tmp_path):
    out, results = run_quick("seq2seq", tmp_path)
    # chance of guessing a 1-3 digit sum exactly is about 1%
    assert results["greedy_exact_match"] > 0.05 and results["greedy_cer"] < 0.6
    assert results["examples"][0]["source"].count("+") == 1


def test_forecast_beats_the_last_value(tmp_path):
    out, results = run_quick("forecast", tmp_path)
    assert results["one_step_mse"] < results["one_step_naive_mse"]
    assert results["multi_step_mse"] < results["multi_step_naive_mse"]
    assert (out / "forecast.png").stat().st_size > 0


def test_forecast_reads_a_csv_column(tmp_path):
    path = tmp_path / "prices.csv"
    prices = 100 + np.cumsum(np.random.default_rng(0).normal(size=400))
    path.write_text("Date,Close\n" + "".join(f"d{i},{p:.4f}\n" for i, p in enumerate(prices)))
    _, results = run_quick("forecast", tmp_path, "--csv", str(path), "--steps", "50", "--time-column", "Date")
    assert results["series"].endswith(":Close") and results["train_points"] == 320


def test_forecast_labels_the_time_axis_with_the_csv_column():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot(np.arange(100, 200), np.zeros(100))  # rows 100..199 of a yearly series from 1800
    load_script("forecast").label_time_axis(ax, [str(1800 + i) for i in range(300)], "Year")
    years = [int(t.get_text()) for t in ax.get_xticklabels()]
    plt.close(fig)
    assert ax.get_xlabel() == "Year" and len(years) >= 4
    assert 1890 <= years[0] <= 1900 and 1999 <= years[-1] <= 2010 and years == sorted(years)


# -- decoding against independent references ---------------------------------


@pytest.fixture(scope="module")
def lm():
    model = LanguageModel(7, 5, RNN(LSTMCell(8), num_layers=2))
    return model, model.init(jax.random.key(0), jnp.zeros((1, 3), jnp.int32))


def test_greedy_sampling_with_carried_state_equals_rereading_the_prefix(lm):
    model, params = lm
    prime = np.array([1, 4, 2])
    carried = sample_text(model, params, prime, 6, jax.random.key(1), temperature=0)
    tokens = list(prime)  # reference: re-run the whole prefix for every new token
    for _ in range(6):
        logits, _ = model.apply(params, jnp.asarray(tokens)[None])
        tokens.append(int(jnp.argmax(logits[0, -1])))
    np.testing.assert_array_equal(carried, tokens[3:])
    np.testing.assert_array_equal(sample_text(model, params, prime, 6, jax.random.key(2), top_k=1), carried)


def test_sampling_rejects_bad_input(lm):
    model, params = lm
    with pytest.raises(ValueError, match=r"prime token ids must lie in 0..6"):
        sample_text(model, params, np.array([1, 7]), 3, jax.random.key(0))
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        sample_text(model, params, np.array([1]), 3, jax.random.key(0), temperature=-1)


def test_beam_of_one_is_greedy_and_wider_beams_score_no_worse():
    src_vocab, tgt_vocab = 6, 5
    layer = RNN(GRUCell(8))
    model = Seq2Seq(src_vocab, tgt_vocab, 4, layer, layer)
    src = np.array([[1, 2, 3, 0], [4, 5, 1, 2]])
    lengths = np.array([3, 4])
    params = model.init(jax.random.key(3), src, lengths, np.zeros((2, 2), np.int32))
    greedy = greedy_decode(model, params, src, lengths, start_id=1, max_len=5)
    for i in range(2):
        ids, score1 = beam_search(model, params, src[i], int(lengths[i]), start_id=1, end_id=99, max_len=5, beam=1)
        np.testing.assert_array_equal(ids, greedy[i])
        _, score4 = beam_search(model, params, src[i], int(lengths[i]), start_id=1, end_id=99, max_len=5, beam=4)
        assert score4 >= score1 - 1e-6


# -- data and metrics for the applications ------------------------------------


def test_negation_reviews_labels_follow_the_rules():
    texts, labels = negation_reviews(0, 300)
    for text, label in zip(texts, labels):
        words = text.split()
        clause = words[words.index("but") + 1 :] if "but" in words else words
        sentiment = [
            i
            for i, w in enumerate(clause)
            if w in POSITIVE or w in {"bad", "awful", "boring", "poor", "dull", "terrible"}
        ][0]
        positive = clause[sentiment] in POSITIVE
        negated = sentiment > 0 and clause[sentiment - 1] == "not"
        assert label == int(positive != negated), text
    assert 0.35 < labels.mean() < 0.65


def test_addition_pairs_and_labelled_loading(tmp_path):
    pairs = addition_pairs(0, 50)
    assert len(set(pairs)) == 50 and all(int(a) + int(b) == int(t) for s, t in pairs for a, b in [s.split("+")])
    with pytest.raises(ValueError, match="only 100 distinct pairs"):
        addition_pairs(0, 101, digits=1)
    (tmp_path / "r.csv").write_text('text,label\n"good film",1\n"not good",0\n')
    texts, labels, names = load_labelled(tmp_path / "r.csv")
    assert texts == ["good film", "not good"] and labels.tolist() == [1, 0] and names == ("0", "1")
    (tmp_path / "r.jsonl").write_text('{"sentence": "fine", "label": 1}\n')
    assert load_labelled(tmp_path / "r.jsonl", text_column="sentence")[0] == ["fine"]
    with pytest.raises(ValueError, match="has no column 'text'"):
        load_labelled(tmp_path / "r.jsonl")
    (tmp_path / "p.csv").write_text("fr,en\nbonjour,hello\n")
    assert load_pairs(tmp_path / "p.csv", "fr", "en") == [("bonjour", "hello")]


def test_char_vocab_specials():
    vocab = CharVocab.build("0123+", specials=("<pad>", "<s>", "</s>"))
    assert vocab.id("</s>") == 2 and vocab.encode("3+")[0] >= 3
    assert vocab.decode([1, *vocab.encode("12+3"), 2, 0]) == "12+3"


def test_metrics_against_hand_counts():
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "abc") == 3
    assert character_error_rate(["12", "105"], ["12", "104"]) == pytest.approx(1 / 5)
    np.testing.assert_array_equal(confusion_matrix([0, 1, 1, 0], [0, 1, 0, 0], 2), [[2, 0], [1, 1]])
