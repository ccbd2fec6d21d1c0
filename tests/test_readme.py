"""The README's Python example runs as written."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs():
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README.md has no python example"
    example = blocks[0]
    assert len(example.strip().splitlines()) <= 12
    namespace: dict = {}
    exec(compile(example, str(README), "exec"), namespace)  # noqa: S102
    # the example ends by checking its own result against the dense SVD
    assert namespace["err"] < 1e-4
