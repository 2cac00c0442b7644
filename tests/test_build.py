"""The build's stages: the order they start and render in, and the order their diagnostics keep."""

from __future__ import annotations

import sys
import types
from typing import NamedTuple

from conftest import SEED, SEED_CONFIG

from pipeline import build as build_module
from pipeline.build import Inputs, _render_order
from pipeline.diagnostics import warning
from pipeline.formats import FORMATS, Format


class _Begun(NamedTuple):
    render_first: bool


def test_only_a_stage_that_asks_and_needs_no_other_renders_first():
    stages = list(FORMATS.values())
    fixed = ["content", "epub", "captions", "pdf", "html"]
    assert [f.name for f in _render_order(stages, {})] == fixed
    assert [f.name for f in _render_order(stages, {"pdf": _Begun(False)})] == fixed
    # a rebuild's PDFs: the booklet's assembly then starts before this process makes the EPUB
    assert [f.name for f in _render_order(stages, {"pdf": _Begun(True)})] == ["pdf", *fixed[:3], "html"]
    # the HTML site links to the other stages' files: it never goes first
    assert [f.name for f in _render_order(stages, {"html": _Begun(True)})] == fixed


def test_workers_get_their_work_first_and_diagnostics_keep_the_stage_order(tmp_path, monkeypatch):
    """A stage that renders first (its start asked to) still reports its diagnostics after the
    stages before it in the fixed order, as a first build does."""
    calls: list[str] = []

    def stage(name: str, first: bool, warm: bool) -> Format:
        module = types.ModuleType(f"carepress_test_stage_{name}")

        def start(_collection, _ctx):
            calls.append(f"start {name}")
            return _Begun(first)

        def render(collection, ctx):
            calls.append(f"render {name}")
            ctx.diagnostics.append(warning("CP999", f"from {name}", f"{name}.txt", 1))
            return {f"{name}.txt": collection.id.encode()}

        module.start, module.render = start, render
        monkeypatch.setitem(sys.modules, module.__name__, module)
        return Format(name, module.__name__, name, warm_up="x:y" if warm else "")

    stages = [stage("a", False, False), stage("b", True, True)]
    monkeypatch.setattr(build_module, "resolve", lambda _names: stages)
    result = build_module.build(Inputs([SEED], SEED_CONFIG, None), ["a", "b"], tmp_path / "out", use_cache=False)
    assert result.status == 0, result.diagnostics
    assert calls == ["start b", "start a", "render b", "render a"]
    assert [d.message for d in result.diagnostics if d.code == "CP999"] == ["from a", "from b"]
    assert (tmp_path / "out" / "a.txt").read_bytes() == (tmp_path / "out" / "b.txt").read_bytes()
