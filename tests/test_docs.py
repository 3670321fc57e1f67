"""Every Python example in docs/index.md runs as written (blocks inside list items are dedented)."""

import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "docs" / "index.md").read_text()
BLOCKS = [textwrap.dedent(code) for code in re.findall(r"^[ \t]*```python\n(.*?)\n[ \t]*```", DOCS, flags=re.S | re.M)]


def test_docs_have_examples():
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_docs_example_runs(index, capsys, tmp_path, monkeypatch):
    for name in ("tests", "examples"):  # paths in the examples are relative to the checkout
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)  # examples that save files write them here
    code = BLOCKS[index]
    first = next(line for line in code.splitlines() if line.strip())
    exec(compile(code, f"docs/index.md[python block {index}: {first.strip()[:40]}]", "exec"), {})
