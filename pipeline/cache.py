"""Build cache: a rebuild with nothing changed renders nothing and imports no renderer.

The key hashes everything an output depends on: source, config, transcript and caption
files, the formats and options asked for, SOURCE_DATE_EPOCH, the package's own files
(code, templates, CSS, fonts) and the versions of the libraries that render. The manifest
(``outputs/.carepress-manifest.json``) stores the key and the SHA-256 of every file written;
a build is up to date only when the key matches and every file is still there unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterable, Mapping

MANIFEST = ".carepress-manifest.json"
PACKAGE_DIR = Path(__file__).resolve().parent
LIBRARIES = ("pydantic", "weasyprint", "ebooklib", "jinja2", "segno", "pypandoc-binary", "rapidfuzz", "pydyf")


def _hash_files(digest, paths: Iterable[Path], root: Path | None = None) -> None:
    for path in sorted(paths):
        name = str(path.relative_to(root)) if root else str(path)
        digest.update(name.encode() + b"\0")
        try:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError:  # missing or unreadable: the build itself reports it
            digest.update(b"unreadable")


@lru_cache(maxsize=1)
def package_fingerprint() -> str:
    digest = hashlib.sha256()
    files = [p for p in PACKAGE_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    _hash_files(digest, files, PACKAGE_DIR)
    for lib in LIBRARIES:
        try:
            digest.update(f"{lib}={metadata.version(lib)}\n".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{lib}=none\n".encode())
    return digest.hexdigest()


def input_key(inputs, formats: list[str], options: Mapping[str, object], strict: bool) -> str:
    digest = hashlib.sha256()
    extra: list[Path] = []
    for folder in (inputs.transcripts_dir, inputs.captions_dir):
        if folder is not None:
            extra.extend(p for p in folder.iterdir() if p.is_file())
    _hash_files(digest, list(inputs.sources) + ([inputs.config_path] if inputs.config_path else []) + extra)
    digest.update(json.dumps({
        "formats": sorted(formats), "options": {k: str(v) for k, v in sorted(options.items())}, "strict": strict,
        "epoch": os.environ.get("SOURCE_DATE_EPOCH", ""), "package": package_fingerprint(),
    }, sort_keys=True).encode())
    return digest.hexdigest()


def _stat(path: Path | str) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_bytes(key: str, digests: Mapping[str, str], diagnostics: list[dict], out: Path) -> bytes:
    """The key, each published file's SHA-256 (``digests``) and stat (size, mtime, inode), and the diagnostics."""
    body = {
        "key": key,
        "files": {name: [sha, *_stat(out / name)] for name, sha in sorted(digests.items())},
        "diagnostics": diagnostics,
    }
    return (json.dumps(body, indent=1, sort_keys=True) + "\n").encode()


def recorded_files(out: Path) -> dict[str, list]:
    """The last manifest's files ({name: [sha, size, mtime, inode]}); empty when there is none."""
    try:
        files = json.loads((out / MANIFEST).read_text(encoding="utf-8")).get("files", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return files if isinstance(files, dict) else {}


def unchanged_since(recorded: Mapping[str, list], digests: Mapping[str, str]):
    """A check for :func:`writer.publish`: the file is as the last build published it (same stat)
    and that build recorded these bytes' SHA-256, so it need not be read back or written."""
    def unchanged(name: str, path: str, data: bytes) -> bool:
        entry = recorded.get(name)
        if not entry or entry[0] != digests.get(name):
            return False
        try:
            return _stat(path) == list(entry[1:])
        except OSError:
            return False

    return unchanged


def up_to_date(out: Path, key: str) -> list[dict] | None:
    """The recorded diagnostics when out/ holds exactly what this key builds; else None."""
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if manifest.get("key") != key:
        return None
    for name, (sha, *stat) in manifest.get("files", {}).items():
        path = out / name
        try:
            if _stat(path) == stat:
                continue  # untouched since it was published
            if hashlib.sha256(path.read_bytes()).hexdigest() != sha:
                return None
        except (OSError, ValueError):
            return None
    return list(manifest.get("diagnostics", []))


PARTS_DIR = ".carepress-cache"
_KEY = re.compile(r"^[0-9a-f]{64}$")


class PartCache:
    """Rendered parts (a handout's PDF, say) by a key that hashes everything they depend on.

    A renderer asks ``get(key)`` before rendering and ``put(key, data)`` after; the build
    publishes the new parts under ``outputs/.carepress-cache/`` through the writer and prunes
    parts no longer used. Keys include :func:`package_fingerprint`, so new code, templates,
    fonts or library versions never reuse old parts.
    """

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.used: set[str] = set()
        self.new: dict[str, bytes] = {}

    @staticmethod
    def key(*parts: str | bytes) -> str:
        digest = hashlib.sha256(package_fingerprint().encode())
        for part in parts:
            data = part.encode("utf-8") if isinstance(part, str) else part
            digest.update(len(data).to_bytes(8, "big") + data)
        return digest.hexdigest()

    def get(self, key: str) -> bytes | None:
        if key in self.new:
            return self.new[key]
        if self.folder is None or not _KEY.match(key):
            return None
        try:
            data = (self.folder / key).read_bytes()
        except OSError:
            return None
        self.used.add(key)
        return data

    def put(self, key: str, data: bytes) -> None:
        self.new[key] = data

    def files(self) -> dict[str, bytes]:
        return {f"{PARTS_DIR}/{key}": data for key, data in sorted(self.new.items())}

    def keep(self) -> set[str]:
        return self.used | set(self.new)


def cached(parts: PartCache | None, make: Callable[[], bytes], *key: str | bytes) -> bytes:
    """The part under ``key`` from the cache, else ``make()`` (then cached); no cache: ``make()``."""
    if parts is None:
        return make()
    digest = parts.key(*key)
    data = parts.get(digest)
    if data is None:
        data = make()
        parts.put(digest, data)
    return data
