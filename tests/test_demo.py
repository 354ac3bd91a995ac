"""The README's first command: the demo runs and shows the vanishing-gradient gap."""

import importlib.util
import pathlib

DEMO = pathlib.Path(__file__).parents[1] / "experiments" / "demo.py"


def test_demo_shows_rnn_sensitivity_vanishing_faster_than_lstm(capsys):
    spec = importlib.util.spec_from_file_location("demo", DEMO)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    curves = demo.main(["--steps", "60", "--hidden", "32", "--seeds", "4"])
    assert "T=60" in capsys.readouterr().out
    rnn, lstm = curves["rnn (tanh, pytorch init)"], curves["lstm (forget bias 1)"]
    assert rnn[50] < rnn[0] * 1e-6  # geometric decay over 50 steps
    assert lstm[50] > 100 * rnn[50]
