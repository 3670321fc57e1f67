"""What a wheel ships: every file of the bundled sample corpus is package data, under 5 MB."""

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_sample_corpus_is_package_data_and_small():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["pytorch_hmm.data"]
    data = ROOT / "src" / "pytorch_hmm" / "data"
    files = [p for p in (data / "sample").rglob("*") if p.is_file()]
    assert len(files) == 1 + 3 * 8 * 3  # LICENSE.md; per utterance .flac, .lab, reference .TextGrid
    unshipped = [str(p.relative_to(data)) for p in files
                 if not any(fnmatch.fnmatch(str(p.relative_to(data)), pat) for pat in patterns)]
    assert unshipped == []
    assert sum(p.stat().st_size for p in files) < 5e6
