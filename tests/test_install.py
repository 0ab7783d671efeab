"""The distribution name: one free name, used by pyproject and by every install hint."""

from __future__ import annotations

import re
from pathlib import Path

from ccnn.batch.runners import RAY_INSTALL_HINT
from ccnn.install import DISTRIBUTION, pip_hint

REPO = Path(__file__).resolve().parents[1]


def test_pyproject_names_the_distribution() -> None:
    text = (REPO / "pyproject.toml").read_text()  # read as text: tomllib is Python 3.11+
    assert re.search(r'^name = "([^"]+)"$', text, re.MULTILINE).group(1) == DISTRIBUTION
    assert DISTRIBUTION != "ccnn"  # "ccnn" on the package index is an unrelated project
    assert '\nccnn = "ccnn.cli:main"\n' in text  # the command keeps its name


def test_no_hint_installs_the_unrelated_ccnn() -> None:
    """``pip install ccnn`` or ``'ccnn[extra]'`` would fetch the unrelated project of that name."""
    assert RAY_INSTALL_HINT.endswith(pip_hint("ray")) and DISTRIBUTION in RAY_INSTALL_HINT
    wrong = re.compile(r"pip install\s+(?:-\S+\s+)*['\"]?ccnn(?:\[|['\"]?(?:\s|$))")
    texts = [REPO / "README.md", *(REPO / "docs").rglob("*.md"), *(REPO / "src").rglob("*.py")]
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for path in texts
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if wrong.search(line)
    ]
    assert not offenders, offenders
