"""DESIGN.md §2: dependencies between the subpackages point one way (no upward imports, no cycles)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "pytorch_hmm"

# what each top-level module or subpackage may import from the rest of pytorch_hmm; semiring
# (log-space math, no internal imports) is a leaf every parameter table may normalise with
ALLOWED = {
    "errors": set(),
    "validation": {"errors"},
    "semiring": set(),
    "threads": set(),
    "distributed": {"errors"},  # torch.distributed helpers: shard, sum statistics, fail together
    "transitions": {"errors", "validation", "semiring"},
    "kernel": {"errors", "validation", "semiring", "transitions", "threads"},
    "emissions": {"errors", "validation", "semiring"},
    "durations": {"errors", "validation", "semiring"},
    "training": {"errors", "validation", "threads", "distributed"},
    "models": {"errors", "validation", "semiring", "transitions", "kernel", "emissions", "durations", "training"},
    "alignment": {"errors", "validation", "semiring", "transitions", "kernel", "emissions", "threads", "distributed", "__version__"},  # acoustic.py: GMM states, saved version
    "metrics": {"errors", "validation", "kernel", "alignment"},
    # online decoding over the kernel's online recursions, for models or raw potentials
    "streaming": {"errors", "validation", "threads", "transitions", "kernel", "models"},
    "speech": {"errors", "validation", "alignment"},
    # the corpus aligner and the command line sit on top of everything
    "aligner": {"errors", "validation", "alignment", "speech", "distributed"},
    "evaluation": {"errors", "validation", "alignment", "metrics"},
    "plotting": {"errors", "validation", "alignment"},  # alignment plots (matplotlib, imported lazily)
    "cli": {"errors", "distributed", "aligner", "alignment", "evaluation", "plotting", "data", "__version__"},
    "data": set(),
}


def _internal_imports(path: Path) -> set:
    """Top-level pytorch_hmm names that ``path`` imports (relative or absolute)."""
    inside = path.relative_to(PACKAGE).with_suffix("").parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(inside[:-1])[: len(inside) - node.level] if node.level > 1 else list(inside[:-1])
                target = base + (node.module.split(".") if node.module else [])
                names = [target[0]] if target else [a.name for a in node.names]
            elif node.module and node.module.split(".")[0] == "pytorch_hmm":
                parts = node.module.split(".")
                names = [parts[1]] if len(parts) > 1 else [a.name for a in node.names]
            else:
                continue
            found.update(names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("pytorch_hmm."))
    return found


def test_subpackages_import_only_what_lies_below_them():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        owner = parts[0]
        if owner == "__init__":
            continue
        assert owner in ALLOWED, f"{owner} is not placed in the layering of tests/test_layering.py"
        bad = _internal_imports(path) - ALLOWED[owner] - {owner}
        wrong += [f"{path.relative_to(PACKAGE)} imports {name}" for name in sorted(bad)]
    assert not wrong, "upward imports:\n" + "\n".join(wrong)


def test_the_checker_sees_imports():
    """The checker itself: the kernel's own imports are found (so an empty result means something)."""
    assert {"transitions", "validation", "errors"} <= _internal_imports(PACKAGE / "kernel" / "inputs.py")
    assert "kernel" in _internal_imports(PACKAGE / "models" / "hmm.py")
