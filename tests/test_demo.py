"""The README's first command: the demo runs and shows the vanishing-gradient gap."""

from conftest import load_script


def test_demo_shows_rnn_sensitivity_vanishing_faster_than_lstm(capsys):
    demo = load_script("demo")
    curves = demo.main(["--steps", "60", "--hidden", "32", "--seeds", "4"])
    assert "T=60" in capsys.readouterr().out
    rnn, lstm = curves["tanh RNN, PyTorch init"], curves["LSTM, forget bias 1"]
    assert rnn[50] < rnn[0] * 1e-6  # geometric decay over 50 steps
    assert lstm[50] > 100 * rnn[50]
