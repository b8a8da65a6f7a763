"""The figures the docs show: files the figure script writes, committed, small."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FIGURES = DOCS / "figures"
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def _script_figures() -> set[str]:
    spec = importlib.util.spec_from_file_location("make_figures", FIGURES / "make_figures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines FIGURES; draws only under __main__
    return {name for names in module.FIGURES.values() for name in names}


def _shown() -> dict[str, list[str]]:
    """Figure file -> the pages that show it (images under docs/figures/)."""
    shown: dict[str, list[str]] = {}
    for page in DOCS.rglob("*.md"):
        for target in IMAGE.findall(page.read_text()):
            path = (page.parent / target).resolve()
            if path.parent == FIGURES:
                shown.setdefault(path.name, []).append(str(page.relative_to(DOCS)))
    return shown


def test_every_figure_the_docs_show_is_written_by_the_script_and_exists():
    written = _script_figures()
    shown = _shown()
    # the pages this work added figures to show them
    assert {"qini.png", "fit_timeline.png", "bench_peers.png"} <= set(shown)
    assert set(shown) <= written, f"shown but not drawn by make_figures.py: {set(shown) - written}"
    missing = [name for name in shown if not (FIGURES / name).is_file()]
    assert not missing, f"figures shown by the docs but not committed: {missing}"
    unused = written - set(shown)
    assert not unused, f"make_figures.py draws figures no page shows: {unused}"


def test_figures_are_small_pngs():
    for name in _script_figures():
        data = (FIGURES / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        assert len(data) < 150_000, (name, len(data))
