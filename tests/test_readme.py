"""The README's ten-line example runs as written."""

import pathlib
import re

README = pathlib.Path(__file__).parents[1] / "README.md"


def test_ten_line_example_runs():
    text = README.read_text()
    section = text[text.index("## Ten lines") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["outputs"].shape == (4, 100, 128)
    assert namespace["h_n"].shape == (4, 4, 64)
    assert namespace["grads"]["l1"]["bwd"]["w_hh"].shape == (256, 64)
