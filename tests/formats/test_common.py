"""Shared pieces of the formats: the compiled-template cache."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

from pipeline.cache import PACKAGE_DIR
from pipeline.formats.common import _template_cache, template_environment

LOAD_ALL = ("from pipeline.formats.common import template_environment; env = template_environment('pdf'); "
            "[env.get_template(name) for name in env.list_templates(extensions=['html'])]; "
            "print(env.get_template('macros.html').render().strip() == '')")


def _entries(folder: str):
    return sorted((PACKAGE_DIR / "__pycache__" / "templates").glob(f"{folder}-*.jinja"))


def test_compiled_templates_are_kept_and_a_damaged_entry_is_compiled_again():
    env = template_environment("pdf")
    for name in env.list_templates(extensions=["html"]):
        env.get_template(name)
    entries = _entries("pdf")
    assert len(entries) >= 5, "the compiled templates were not kept"
    for entry in entries:
        entry.write_bytes(b"not a compiled template")
    again = subprocess.run([sys.executable, "-c", LOAD_ALL], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and again.stdout.strip() == "True", again.stderr
    assert [entry.read_bytes() != b"not a compiled template" for entry in entries] == [True] * len(entries)


def test_options_that_change_compiled_code_change_the_entries():
    plain = _template_cache("epub", {"autoescape": True, "finalize": None})
    finalized = _template_cache("epub", {"autoescape": True, "finalize": str.upper})
    other = _template_cache("html", {"autoescape": True, "finalize": None})
    assert len({plain.pattern, finalized.pattern, other.pattern}) == 3
    assert plain.directory == finalized.directory == str(PACKAGE_DIR / "__pycache__" / "templates")
