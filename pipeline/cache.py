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
import sys
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Mapping

MANIFEST = ".carepress-manifest.json"
PACKAGE_DIR = Path(__file__).resolve().parent
# what renders or assembles outputs: a new version of any makes every output again
LIBRARIES = ("pydantic", "weasyprint", "ebooklib", "jinja2", "segno", "pypandoc-binary", "rapidfuzz", "pydyf",
             "pikepdf", "lxml", "pillow", "markupsafe")


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
    versions = library_versions(LIBRARIES)
    for lib in LIBRARIES:
        digest.update(f"{lib}={versions.get(lib, 'none')}\n".encode())
    return digest.hexdigest()


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def library_versions(names: Iterable[str]) -> dict[str, str]:
    """Each installed library's version, as ``importlib.metadata.version`` gives it (the first
    found on ``sys.path``), from the names of the ``<name>-<version>.dist-info`` folders that
    installers make: importing importlib.metadata and reading each METADATA file cost about 80 ms,
    on the path of every build. A library found no such way (an egg, say) is asked of
    importlib.metadata; one not installed is left out."""
    wanted = {_normal(name): name for name in names}
    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            listing = sorted(os.listdir(entry or "."))
        except OSError:
            continue
        for folder in listing:
            if folder.endswith(".dist-info") and "-" in folder:
                name, _, version = folder[:-len(".dist-info")].partition("-")
                lib = wanted.get(_normal(name))
                if lib is not None and lib not in found and version and "-" not in version:
                    found[lib] = version
    missing = [name for name in names if name not in found]
    if missing:
        from importlib import metadata

        for name in missing:
            try:
                found[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                pass
    return found


def input_files(inputs) -> list[Path]:
    """Every file a build reads: the sources, the config, and each file in the transcripts and
    captions folders (what the cache key hashes, and what ``carepress watch`` watches)."""
    files = list(inputs.sources) + ([inputs.config_path] if inputs.config_path else [])
    for folder in (inputs.transcripts_dir, inputs.captions_dir):
        if folder is not None:
            try:
                files.extend(p for p in folder.iterdir() if p.is_file())
            except OSError:  # gone since it was found: the build reads none of it
                pass
    return files


def input_key(inputs, formats: list[str], options: Mapping[str, object], strict: bool) -> str:
    digest = hashlib.sha256()
    _hash_files(digest, input_files(inputs))
    digest.update(json.dumps({
        "formats": sorted(formats), "options": {k: str(v) for k, v in sorted(options.items())}, "strict": strict,
        "epoch": os.environ.get("SOURCE_DATE_EPOCH", ""), "package": package_fingerprint(),
    }, sort_keys=True).encode())
    return digest.hexdigest()


def _stat(path: Path | str) -> list[int]:
    return _fields(os.stat(path))


def _fields(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_bytes(key: str, digests: Mapping[str, str], diagnostics: list[dict],
                   stats: Mapping[str, os.stat_result]) -> bytes:
    """The key, each published file's SHA-256 (``digests``) and stat as published (size, mtime,
    inode: ``stats``, from :func:`writer.publish`), and the diagnostics."""
    body = {
        "key": key,
        "files": {name: [sha, *_fields(stats[name])] for name, sha in sorted(digests.items())},
        "diagnostics": diagnostics,
    }
    return (json.dumps(body, separators=(",", ":"), sort_keys=True) + "\n").encode()


def recorded_files(out: Path) -> dict[str, list]:
    """The last manifest's files ({name: [sha, size, mtime, inode]}); empty when there is none."""
    try:
        files = json.loads((out / MANIFEST).read_bytes()).get("files", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return files if isinstance(files, dict) else {}


def unchanged_since(recorded: Mapping[str, list], digests: dict[str, str]):
    """A check for :class:`writer.Publication`: the file is as the last build published it (same
    stat) and that build recorded these bytes' SHA-256, so it need not be read back or written.
    The digests it computes go into ``digests`` (the new manifest records them)."""
    def unchanged(name: str, _path: str, st: os.stat_result, data: bytes) -> bool:
        entry = recorded.get(name)
        if not entry or _fields(st) != entry[1:]:
            return False
        digests[name] = sha256(data)
        return entry[0] == digests[name]

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
PACK_MAGIC = b"carepress-pack 1\n"
PACKS = [f"{n:02x}" for n in range(256)]  # one pack per first two hex digits of the keys


def shard(key: str) -> str:
    """The pack a key's part is kept in."""
    return key[:2]


def pack_name(shard: str) -> str:
    return f"pack-{shard}"


def pack_bytes(entries: Mapping[str, bytes]) -> bytes:
    """One pack: a magic line, the index length, a JSON index {key: [offset, length]} and the
    entries, in key order (so the same entries always give the same bytes)."""
    index: dict[str, list[int]] = {}
    offset = 0
    for key in sorted(entries):
        index[key] = [offset, len(entries[key])]
        offset += len(entries[key])
    head = json.dumps(index, separators=(",", ":")).encode()
    return b"".join([PACK_MAGIC, b"%d\n" % len(head), head] + [entries[key] for key in sorted(entries)])


def read_pack(data: bytes) -> dict[str, bytes]:
    """The entries of a pack; empty for anything that is not a whole, well-formed pack."""
    if not data.startswith(PACK_MAGIC):
        return {}
    try:
        line_end = data.index(b"\n", len(PACK_MAGIC))
        length = int(data[len(PACK_MAGIC):line_end])
        index = json.loads(data[line_end + 1:line_end + 1 + length])
        base = line_end + 1 + length
        entries = {key: data[base + start:base + start + size] for key, (start, size) in index.items()
                   if _KEY.match(key)}
    except (ValueError, TypeError):
        return {}
    if any(base + start + size > len(data) for start, size in index.values()):
        return {}
    return entries


@lru_cache(maxsize=2)
def _keyed(fingerprint: str):
    """SHA-256 fed with the package fingerprint: every part key starts from a copy."""
    return hashlib.sha256(fingerprint.encode())


class PartCache:
    """Rendered parts (a handout's PDF, say) by a key that hashes everything they depend on.

    A renderer asks ``get(key)`` before rendering and ``put(key, data)`` after. Parts live in
    256 pack files under ``outputs/.carepress-cache/`` (by the key's first two hex digits: a
    build of a thousand topics has about 5,000 parts, and creating that many files costs more
    than rendering some of them; with 16 packs, an edit to one topic rewrote 9 of them, about
    half of the cache's 34 MB, where now it rewrites 13 small ones). The build publishes,
    through the writer, each pack that gained a part, lost one no longer used or holds one put
    again with other bytes, and prunes packs left with none. Keys include
    :func:`package_fingerprint`, so new code, templates, fonts or library versions never
    reuse old parts.
    """

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.used: set[str] = set()
        self.new: dict[str, bytes] = {}
        self._packs: dict[str, dict[str, bytes]] = {}
        self._sealed = False  # the packs are made: no part may be used or added any more

    @staticmethod
    def key(*parts: str | bytes) -> str:
        digest = _keyed(package_fingerprint()).copy()
        for part in parts:
            data = part.encode("utf-8") if isinstance(part, str) else part
            digest.update(len(data).to_bytes(8, "big") + data)
        return digest.hexdigest()

    def _pack(self, shard: str) -> dict[str, bytes]:
        if shard not in self._packs:
            try:
                data = (self.folder / pack_name(shard)).read_bytes() if self.folder is not None else b""
            except OSError:
                data = b""
            self._packs[shard] = read_pack(data)
        return self._packs[shard]

    def get(self, key: str) -> bytes | None:
        self._open()
        if key in self.new:
            return self.new[key]
        if not _KEY.match(key):
            return None
        data = self._pack(shard(key)).get(key)
        if data is not None:
            self.used.add(key)
        return data

    def put(self, key: str, data: bytes) -> None:
        self._open()
        self.new[key] = data

    def hold(self, keys: Iterable[str]) -> None:
        """Keep these parts (if cached) though this build does not read them."""
        self._open()
        self.used.update(keys)

    def _open(self) -> None:
        if self._sealed:
            raise RuntimeError("the part cache's packs are made: a part used or added now would be lost")

    def files(self) -> dict[str, bytes]:
        """The packs to publish: each that gains a part or loses one this build did not use.
        Made once every stage has rendered (what they left pending uses no part), so they are
        written while the booklet is still being assembled; using the cache after is an error."""
        self._sealed = True
        new: dict[str, dict[str, bytes]] = {}
        for key, data in self.new.items():
            new.setdefault(shard(key), {})[key] = data
        out: dict[str, bytes] = {}
        # a pack this build never read kept none of its parts: it changes only if it gains one
        for name in sorted(self._packs.keys() | new.keys()):
            old = self._pack(name)
            keep = {key: data for key, data in old.items() if key in self.used}
            keep.update(new.get(name, {}))
            if keep and keep != old:  # a part gained or lost, or put again with other bytes (page counts)
                out[f"{PARTS_DIR}/{pack_name(name)}"] = pack_bytes(keep)
        return out

    def keep(self) -> set[str]:
        """The pack files this build leaves (the others are pruned)."""
        return {pack_name(shard(key)) for keys in (self.new, self.used) for key in keys}


def has_parts(folder: Path) -> bool:
    """Whether a part-cache folder holds an earlier build's packs."""
    try:
        with os.scandir(folder) as found:
            return any(entry.name.startswith("pack-") for entry in found)
    except OSError:
        return False


def entries(folder: Path) -> dict[str, bytes]:
    """Every part in a cache folder (tests and tools)."""
    found: dict[str, bytes] = {}
    for name in PACKS:
        try:
            found.update(read_pack((folder / pack_name(name)).read_bytes()))
        except OSError:
            continue
    return found


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
