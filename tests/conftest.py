"""Shared fixtures: the seed collection, case folders, a one-time full build, a browser."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "tests" / "cases"
SEED = ROOT / "source" / "dystonia-education.txt"
SEED_CONFIG = ROOT / "source" / "collection.toml"
NODE_BIN = ROOT / "node_modules" / ".bin"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

os.environ.setdefault("SOURCE_DATE_EPOCH", "1795564800")  # 2026-11-25 (the seed review date): fixed bytes


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch):
    """The CLI's defaults (source/, outputs/, schema/) are relative to the repo root."""
    monkeypatch.chdir(ROOT)


def load_case(source: Path, config: Path | None = None):
    from pipeline.config import Config, load_config
    from pipeline.content import load

    cfg = load_config(config) if config else Config()
    transcripts = source.parent / "transcripts"
    return cfg, load([source], cfg, transcripts_dir=transcripts if transcripts.is_dir() else None)


@pytest.fixture(scope="session")
def seed():
    """(config, Loaded) for the seed source with its collection.toml."""
    return load_case(SEED, SEED_CONFIG)


@pytest.fixture(scope="session")
def seed_collection(seed):
    return seed[1].collection


@pytest.fixture(scope="session")
def video_case():
    return load_case(CASES / "video" / "source.txt", CASES / "video" / "collection.toml")


@pytest.fixture(scope="session")
def hostile_case():
    return load_case(CASES / "hostile" / "source.txt")


def run_cli(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real console entry point in a child process (exit status, stdout, stderr)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, capture_output=True, text=True,
                          env=full_env, timeout=600)


def modules_imported(code: str, modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` ``code`` imports, run in a fresh interpreter in the repository."""
    probe = f"{code}\nimport sys\nprint(','.join(sorted(m for m in {modules!r} if m in sys.modules)))\n"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [name for name in done.stdout.strip().split(",") if name]


def build_to(out: Path, *args: str) -> Path:
    result = run_cli("build", "--quiet", "--out", str(out), *args)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Path:
    """One full build of the seed (every available format) shared by the format tests."""
    return build_to(tmp_path_factory.mktemp("built") / "outputs")


@pytest.fixture(scope="session")
def browser():
    """Debian chromium driven by Playwright (never `playwright install`)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def java() -> str:
    path = shutil.which("java")
    assert path, "java is not installed (the Makefile installs it)"
    return path
