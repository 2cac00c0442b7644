"""Rendering PDFs with WeasyPrint: what a worker process runs (see pdf.py for what it renders).

Imports nothing heavy of ours (no pydantic, no Jinja), so a worker forked before the sources
are read loads only WeasyPrint, its fonts and stylesheets (warm_up). WeasyPrint renders in
process. Fonts and CSS are parsed once per process and reused for every document. A
restricted URL fetcher serves only the package's own assets (and the QR codes we embed as
``data:`` URLs); anything else (``file:``, ``http:``) is refused. WeasyPrint's ERROR log
records (a missing alt text under PDF/UA, say) fail the build.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import mimetypes
import os
import re
import sys
import types
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple
from xml.etree import ElementTree

from ..diagnostics import CarepressError, error
from .assets import FONT_DIR, TEMPLATE_DIR, epoch_datetime

ASSET_BASE = "https://assets.carepress.invalid/"
PDF_TEMPLATES = TEMPLATE_DIR / "pdf"
PAPER = {"letter": "Letter", "a4": "A4"}


@dataclass
class Fetches:
    """What the renderer asked for: served assets and refused URLs (tests read this)."""

    served: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def load_weasyprint() -> None:
    """Import WeasyPrint faster than a plain import: a worker's start-up, and so part of every
    rebuild's path (0.35 to 0.45 s here; 0.7 s with only the first of these, about 0.95 s with
    none).

    - WeasyPrint tries several names for each C library it loads (``libpango-1.0-0``, ...,
      ``libpango-1.0.so.0``); for each name that is not a file, cffi asks
      ``ctypes.util.find_library``, which runs gcc and ldconfig: about 50 processes and a
      quarter of a second. The names that are files load directly, the same libraries either
      way, so that search is skipped while WeasyPrint is imported.
    - Its C declarations come precompiled (:class:`_PrecompiledFFI`).
    - fontTools' subsetter and variable-font instancer are imported when first used
      (:class:`_OnFirstUse`): WeasyPrint subsets fonts with HarfBuzz and our fonts are not
      variable, so neither is used, and importing them costs 0.2 s.

    Should a WeasyPrint release not import this way (its declarations made differently, say),
    it is imported again as it is.
    """
    if "weasyprint" in sys.modules:
        return
    import ctypes.util

    import cffi

    find, ffi = ctypes.util.find_library, cffi.FFI
    ctypes.util.find_library = lambda _name: None
    cffi.FFI = _PrecompiledFFI.make
    stubs = _OnFirstUse.install("fontTools.subset", ("fontTools.varLib.instancer", "instantiateVariableFont"))
    try:
        importlib.import_module("weasyprint")
    except Exception:
        for name in [name for name in sys.modules if name.split(".")[0] == "weasyprint"]:
            del sys.modules[name]
        cffi.FFI = ffi
        importlib.import_module("weasyprint")
    finally:
        ctypes.util.find_library, cffi.FFI = find, ffi
        for name, stub in stubs.items():
            if sys.modules.get(name) is stub:
                del sys.modules[name]  # a later import gets the real module


class _OnFirstUse(types.ModuleType):
    """Stands in for a module while WeasyPrint is imported, and imports it when first used.

    ``install`` puts one in ``sys.modules`` for each name not imported yet (for a
    ``(module, function)`` pair, with that function as a stand-in that imports and calls the
    real one); ``load_weasyprint`` takes them out again after the import.
    """

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(importlib.import_module(self.__name__), name)

    @classmethod
    def install(cls, *names) -> dict[str, "_OnFirstUse"]:
        stubs = {}
        for entry in names:
            name, function = (entry, None) if isinstance(entry, str) else entry
            if name in sys.modules:
                continue
            stub = stubs[name] = cls(name)
            if function:
                def call(*args, _name=name, _function=function, **kwargs):
                    return getattr(importlib.import_module(_name), _function)(*args, **kwargs)

                setattr(stub, function, call)
            sys.modules[name] = stub
        return stubs


class _PrecompiledFFI:
    """What ``cffi.FFI()`` gives WeasyPrint's ``weasyprint.text.ffi`` while it is imported.

    That module declares the C functions it uses in one ``ffi.cdef`` (about 460 lines), which
    cffi parses with pycparser: 0.07 s, and pycparser again for each type named in
    ``ffi.new`` and ``ffi.cast`` (``'PangoRectangle *'``; ``f'hb_codepoint_t[{n}]'``, a new
    string for each number of glyphs a font subset keeps): 0.1 s more while a worker warms up
    and more later. Given the same declarations, cffi's "out-of-line ABI mode" writes them as a
    small Python module holding a compiled type table (no C compiler involved), and its C
    backend then reads every type name directly. So the declarations' module is written once
    into the package's ``__pycache__`` (named after a hash of them and cffi's version) and
    WeasyPrint gets the FFI it defines: the same declarations, the same libraries, the same
    PDFs (tested). Any other use falls back to cffi's own FFI.
    """

    CACHE = Path(__file__).resolve().parent.parent / "__pycache__" / "cffi"
    FOR = "weasyprint.text.ffi"

    def __init__(self, real_ffi) -> None:
        self._ffi = real_ffi  # cffi.FFI
        self._real = None

    @classmethod
    def make(cls, *args, **kwargs):
        real_ffi = sys.modules["cffi"].api.FFI
        if args or kwargs or sys._getframe(1).f_globals.get("__name__") != cls.FOR:
            return real_ffi(*args, **kwargs)
        return cls(real_ffi)

    def cdef(self, source: str, **kwargs) -> None:
        if kwargs or self._real is not None:
            return self.__getattr__("cdef")(source, **kwargs)
        self._real = self.compiled(self._ffi, source)
        # WeasyPrint's module goes on with the compiled FFI, and so does every module importing it
        caller = sys._getframe(1).f_globals
        for name, value in list(caller.items()):
            if value is self:
                caller[name] = self._real

    def __getattr__(self, name: str):
        if self._real is None:  # not the use we know: cffi's own FFI
            self._real = self._ffi()
        return getattr(self._real, name)

    @classmethod
    def compiled(cls, real_ffi, source: str):
        import hashlib

        import cffi

        digest = hashlib.sha256(f"{cffi.__version__}\0{source}".encode()).hexdigest()[:24]
        name = f"_weasyprint_ffi_{digest}"
        path = cls.CACHE / f"{name}.py"
        try:
            code = path.read_text(encoding="utf-8")
        except OSError:
            import io

            from cffi.recompiler import make_py_source

            builder = real_ffi()
            builder.cdef(source)
            written = io.StringIO()
            make_py_source(builder, name, written)  # what ffi.emit_python_code writes, unannounced
            code = written.getvalue()
            try:  # kept for the next process; a folder that cannot be written only means no cache
                cls.CACHE.mkdir(parents=True, exist_ok=True)
                temporary = path.with_name(f"{name}.{os.getpid()}.tmp")
                temporary.write_text(code, encoding="utf-8")
                os.replace(temporary, path)
            except OSError:
                pass
        namespace = {"__name__": name}
        exec(compile(code, str(path), "exec"), namespace)
        return namespace["ffi"]


def make_fetcher(record: Fetches):
    load_weasyprint()
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    class AssetFetcher(URLFetcher):
        """Serves package assets and data: URLs; refuses every other URL."""

        def fetch(self, url, headers=None):
            if url.startswith("data:"):
                record.served.append(url[:30])
                return super().fetch(url, headers)
            if url.startswith(ASSET_BASE):
                name = url[len(ASSET_BASE):].split("?")[0].split("#")[0]
                parts = name.split("/")
                if len(parts) == 2 and parts[0] == "fonts" and (FONT_DIR / parts[1]).is_file() and ".." not in name:
                    record.served.append(url)
                    mime = mimetypes.guess_type(parts[1])[0] or "font/ttf"
                    return URLFetcherResponse(url, (FONT_DIR / parts[1]).read_bytes(), {"Content-Type": mime})
            record.refused.append(url)
            raise ValueError(f"carepress refuses to fetch {url!r}: only its own assets are allowed")

    return AssetFetcher()


class _LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def _captured_log():
    logger = logging.getLogger("weasyprint")
    handler = _LogCapture()
    previous = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = previous


class _Deflate:
    """zlib as pydyf sees it, with level 6 where pydyf asks for 9: a few per cent of every
    PDF's render time for streams about 1% larger. Output is still byte-for-byte repeatable."""

    def __getattr__(self, name: str):
        return getattr(zlib, name)

    @staticmethod
    def compressobj(level: int = -1, *args, **kwargs):
        if args or kwargs:
            return zlib.compressobj(min(level, 6), *args, **kwargs)
        return _Remembered(min(level, 6))


class _Remembered:
    """A deflate stream made at once when it is flushed: the data given to ``compress`` (pydyf
    gives a stream's data once), deflated whole at the level asked, the same bytes as zlib's
    object gives across its calls, or as deflated before for the same data in this process (a
    topic's handout and large print embed the same font subsets: half of the fonts' deflating)."""

    __slots__ = ("level", "pieces")

    def __init__(self, level: int):
        self.level, self.pieces = level, []

    def compress(self, data) -> bytes:
        self.pieces.append(bytes(data))
        return b""

    def flush(self, mode: int = zlib.Z_FINISH) -> bytes:
        if mode != zlib.Z_FINISH:
            raise ValueError("carepress deflates a stream whole")
        data = b"".join(self.pieces)
        self.pieces = []
        if len(data) < DEFLATED_KEPT_FROM:
            deflate = zlib.compressobj(self.level)
            return deflate.compress(data) + deflate.flush()
        key = (self.level, data)
        found = _DEFLATED.get(key)
        if found is None:
            deflate = zlib.compressobj(self.level)
            found = deflate.compress(data) + deflate.flush()
            if len(_DEFLATED) >= DEFLATED_KEPT_AT_MOST:
                _DEFLATED.clear()
            _DEFLATED[key] = found
        return found


DEFLATED_KEPT_FROM = 4096  # bytes: font subsets (a page's contents are seldom the same twice)
DEFLATED_KEPT_AT_MOST = 32
_DEFLATED: dict = {}


def _deflate_level_6() -> None:
    import pydyf

    if getattr(pydyf, "zlib", None) is zlib:
        pydyf.zlib = _Deflate()


# Where WeasyPrint's make_margin_boxes makes the three boxes of a side of the page, and where it
# makes a corner box: each then gets a box, its counters and its percentages resolved even when it
# generates nothing, and a side none of whose boxes generates anything is then thrown away.
_MARGIN_SIDE = """        side_boxes = [
            make_box(f'@{prefix}-{suffix}', containing_block)
            for suffix in suffixes]"""
_MARGIN_CORNER = """        box = make_box(at_keyword, (cb_width, cb_height))"""
_MARGIN_START = "    margin_top = page.margin_top\n"


def _rewritten(module, name: str, edits: list[tuple[str, str]], within: str | None = None,
               names: dict | None = None):
    """The library's function ``name`` of ``module`` (a method of its class ``within``) with
    ``edits`` made to its source (each ``(anchor, replacement)``: an anchor found exactly once),
    compiled in a copy of the module's namespace (with ``names`` added, for the edits): the new
    function, or None when the source reads
    otherwise (another release) or cannot be read (a compiled or bytecode-only install), and the
    library's stays as it is (``function.original``)."""
    # the function's text, up to the next definition at its level (inspect.getsource takes 11 ms
    # to find the same, and a worker's start-up is on a rebuild's path)
    try:
        text = Path(module.__file__).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    indent, after = "", 0
    if within:  # a method: in the class's body
        indent = "    "
        after = text.find(f"\nclass {within}:") + 1 or text.find(f"\nclass {within}(") + 1
        if not after:
            return None
    start = text.find(f"\n{indent}def {name}(", after) + 1
    ends = [i + 1 for i in (text.find(f"\n{indent}def ", start), text.find(f"\n{indent}@", start),
                            text.find("\nclass ", start), text.find("\ndef ", start)) if i >= 0]
    end = min(ends, default=len(text)) if start else 0
    source = text[start:end]
    if not source or any(source.count(anchor) != 1 for anchor, _ in edits):
        return None
    if indent and "super()" in source:  # a method compiled outside its class has no __class__ cell
        return None
    for anchor, replacement in edits:
        source = source.replace(anchor, replacement)
    if indent:
        source = "".join(line.removeprefix(indent) for line in source.splitlines(keepends=True))
    namespace = {**vars(module), **(names or {})}
    lines = "\n" * text.count("\n", 0, start)  # so tracebacks give the lines of the library's file
    exec(compile(lines + source, module.__file__, "exec"), namespace)
    function = namespace[name]
    return _ours(function, getattr(getattr(module, within) if within else module, name))


def _ours(made, original):
    """``made``, marked as ours in place of the library's ``original`` (which tests compare it to)."""
    made.carepress = True
    made.original = original
    return made


def _put_where(modules, name: str, original, made) -> None:
    """``made`` set as ``name`` in each of ``modules`` that holds ``original`` by that name (each
    module that imported the library's function calls it by its own name)."""
    for module in modules:
        if getattr(module, name, None) is original:
            setattr(module, name, made)


def _install(owner, attribute: str, module, name: str, edits: list[tuple[str, str]],
             within: str | None = None, names: dict | None = None) -> None:
    """``owner.attribute`` (where the library calls it from) set to :func:`_rewritten`'s function,
    once; left as it is when the source reads otherwise or cannot be read."""
    if getattr(getattr(owner, attribute), "carepress", False):
        return
    function = _rewritten(module, name, edits, within, names)
    if function is not None:
        setattr(owner, attribute, function)


# Where WeasyPrint's resolve_percentages resolves a box's margins, paddings and sizes, each through
# resolve_one_percentage and percentage: two calls a property, fourteen properties a box.
_PERCENT_WIDTHS = """    resolve_one_percentage(box, 'margin_left', cb_width)
    resolve_one_percentage(box, 'margin_right', cb_width)
    resolve_one_percentage(box, 'margin_top', maybe_height)
    resolve_one_percentage(box, 'margin_bottom', maybe_height)
    resolve_one_percentage(box, 'padding_left', cb_width)
    resolve_one_percentage(box, 'padding_right', cb_width)
    resolve_one_percentage(box, 'padding_top', maybe_height)
    resolve_one_percentage(box, 'padding_bottom', maybe_height)
    resolve_one_percentage(box, 'width', cb_width)
    resolve_one_percentage(box, 'min_width', cb_width)
    resolve_one_percentage(box, 'max_width', cb_width)
"""
_PERCENT_HEIGHTS = """        resolve_one_percentage(box, 'height', cb_height)
        resolve_one_percentage(box, 'min_height', cb_height)
        resolve_one_percentage(box, 'max_height', cb_height)
"""


def _resolved_inline(anchor: str, indent: str) -> str:
    """``anchor``'s resolve_one_percentage calls as one loop doing what each call does."""
    pairs = ", ".join(f"({name}, {refer})" for name, refer in re.findall(r"\(box, ('\w+'), (\w+)\)", anchor))
    return "".join(indent + line if line else "\n" for line in (
        f"style = box.style  # carepress: resolve_one_percentage and percentage, inline\n"
        f"for name, refer_to in ({pairs}):\n"
        "    value = style[name]\n"
        "    if value is not None and value != 'auto':\n"
        "        unit = getattr(value, 'unit', None)\n"
        "        if unit is None:\n"
        "            value = percentage(value, style, refer_to)\n"
        "        elif unit == '%':\n"
        "            value = refer_to * value.value / 100\n"
        "        else:\n"
        "            value = value.value\n"
        "    setattr(box, name, 0 if value == 'auto' and name in ('min_width', 'min_height') else value)\n"
    ).splitlines(keepends=True))


def _percentages_resolved_inline() -> None:
    """WeasyPrint's ``resolve_percentages`` (a box's margins, paddings and sizes, for every box
    laid out) doing what ``resolve_one_percentage`` and ``percentage`` do for each property in
    one loop, not in two calls a property: 0.7% fewer instructions (callgrind: 12 handouts, their
    large print and a booklet part, 1.6622e9 against 1.6504e9). The same values in the same
    attributes, so the same PDFs (tested, against WeasyPrint's function). Installed first, so the functions
    rewritten after it (make_margin_boxes) call it too. (See _rewritten: another release's
    source leaves WeasyPrint's function.)"""
    load_weasyprint()
    from weasyprint.layout import percent

    original = percent.resolve_percentages
    if getattr(original, "carepress", False):
        return
    function = _rewritten(percent, "resolve_percentages", [(_PERCENT_WIDTHS, _resolved_inline(_PERCENT_WIDTHS, "    ")),
                                                          (_PERCENT_HEIGHTS, _resolved_inline(_PERCENT_HEIGHTS, "        "))])
    if function is None:
        return
    _put_where([importlib.import_module(f"weasyprint.layout.{name}") for name in _PERCENT_CALLERS],
               "resolve_percentages", original, function)


_PERCENT_CALLERS = ("percent", "inline", "page", "float", "grid", "absolute", "block", "column", "table")


def _margin_boxes_only_where_generated() -> None:
    """WeasyPrint's ``make_margin_boxes``, skipping a side of the page none of whose three
    margin boxes generates anything, and a corner box that generates nothing, before making
    their boxes (WeasyPrint makes all sixteen on every page, then throws those away). A handout
    generates two of the sixteen (the footer), so 14 were made for nothing: 7% of a handout's
    instructions (callgrind). The boxes kept are made as before, so the PDFs are the same
    (tested, against WeasyPrint's own function). The check is the one WeasyPrint's ``make_box``
    makes: a box with no style of its own takes the page's anonymous style, whose ``content``
    is ``normal``. (See _rewritten: another release's source leaves WeasyPrint's function.)
    """
    load_weasyprint()  # first: imported plainly, WeasyPrint would parse its declarations with pycparser
    import weasyprint.layout as layout
    from weasyprint.layout import page

    _install(layout, "make_margin_boxes", page, "make_margin_boxes", [  # what layout_document calls
        (_MARGIN_START, "    def generates(at_keyword):\n"
                        "        style = context.style_for(page.page_type, at_keyword)\n"
                        "        return style is not None and style['content'] not in (\n"
                        "            'normal', 'inhibit', 'none')\n\n" + _MARGIN_START),
        (_MARGIN_SIDE, "        if not any(generates(f'@{prefix}-{suffix}') for suffix in suffixes):\n"
                       "            continue\n" + _MARGIN_SIDE),
        (_MARGIN_CORNER, "        if not generates(at_keyword):\n"
                         "            continue\n" + _MARGIN_CORNER)])


# Where WeasyPrint's tagging gives a run of text (a text box, marked "Span" in the page's content)
# a structure element of its own, unless its element is a link, whose text it maps to the link.
_TEXT_RUN = """                if tag == 'Link':
                    # Associate MCID directly with link reference.
"""


def _text_runs_in_their_element() -> None:
    """WeasyPrint's tagging (``_build_box_tree``) with each run of text's marked content a kid
    of the element it is in (the paragraph, the heading, the list item's body), as it already
    does for a link's, not of a ``Span`` structure element of its own around every line and
    every piece of a line. Such a Span has no attributes, so it says nothing an assistive
    technology uses: the tree reads the same. A third of the objects of the booklet were these
    Spans (8,351 of 23,151 for 1,000 topics). Without them a handout is 1.5% smaller and its
    rendering 2% fewer instructions (callgrind); the booklet is 7% smaller, and a rebuild's
    assembly, which opens, copies and writes every object, 13.5% fewer. The pages' contents
    are the same (tested). (See _rewritten: another release's source leaves WeasyPrint's function.)
    """
    load_weasyprint()
    from weasyprint.pdf import tags

    _install(tags, "_build_box_tree", tags, "_build_box_tree", [  # what add_tags calls
        (_TEXT_RUN, _TEXT_RUN.replace("if tag == 'Link':", "if tag == 'Link' or kid['tag'] == 'Span':"))])


# pydyf's PDF.write, for a compressed file with an identifier (what WeasyPrint asks for), makes
# every object's data twice: once to write it, once more for the identifier's MD5 (and a stream's
# data is its deflated bytes, so every stream is deflated twice).
_WRITE_START = "        # Convert version and identifier to bytes.\n"
_WRITE_ONCE = [
    (_WRITE_START,
     "        datas = {}  # carepress: each object's data made once, kept with the object\n\n"
     "        def data_of(object_):\n"
     "            found = datas.get(id(object_))\n"
     "            if found is None:\n"
     "                found = datas[id(object_)] = (object_, object_.data)\n"
     "            return found[1]\n\n"
     "        def indirect(object_):  # Object.indirect\n"
     "            return f'{object_.number} {object_.generation} obj\\n'.encode() + data_of(object_) + b'\\nendobj'\n\n"
     + _WRITE_START),
    ("\n                    self.write_line(object_.indirect, output)",
     "\n                    self.write_line(indirect(object_), output)"),
    ("                data = object_.data\n", "                data = data_of(object_)\n"),
    ("            self.write_line(object_stream.indirect, output)", "            self.write_line(indirect(object_stream), output)"),
    ("data = b''.join(obj.data for obj in self.objects if obj.free != 'f')",
     "data = b''.join(data_of(obj) for obj in self.objects if obj.free != 'f')"),
]


def _subsets_kept() -> None:
    """WeasyPrint's ``Font.subset`` giving the subset it made before for the same font file and
    the same glyphs (and the same hinting, and notdef outline or not): a topic's handout and its
    large print show the same text in the same fonts, so every second subset is one already made
    (48 different of 96 for 24 handouts and their large print). HarfBuzz's subset depends on
    nothing else; only a subset WeasyPrint made (its font file changed) is kept. With the font
    streams' deflating kept likewise (_Remembered): 1.5% fewer instructions (callgrind: 12
    handouts, their large print and a booklet part, 1.5855e9 against 1.5610e9). The PDFs are the
    same (tested, against WeasyPrint's method and zlib's object)."""
    load_weasyprint()
    from weasyprint.pdf import fonts

    original = fonts.Font.subset
    if getattr(original, "carepress", False):
        return

    def subset(self, to_unicode, hinting):
        if not to_unicode:
            return original(self, to_unicode, hinting)
        key = (self.file_content, self.index, tuple(sorted(to_unicode)), bool(self.missing), hinting)
        found = _SUBSETS.get(key)
        if found is not None:
            self.file_content = found
            return None
        whole = self.file_content
        result = original(self, to_unicode, hinting)
        if self.file_content is not whole:
            if len(_SUBSETS) >= SUBSETS_KEPT_AT_MOST:
                _SUBSETS.clear()
            _SUBSETS[key] = self.file_content
        return result

    fonts.Font.subset = _ours(subset, original)


SUBSETS_KEPT_AT_MOST = 64
_SUBSETS: dict = {}
_SVGS: dict = {}  # what _svg_drawings_kept keeps (its images hold their layout's fonts: see _free)
_SVG_PLAIN_TAGS = frozenset({"svg", "g", "path", "line", "rect", "polyline", "polygon", "circle", "ellipse"})
_SVG_STATE = ("_current_color", "_current_color_stroke", "_current_alpha", "_current_alpha_stroke")


def _plain_svg(image) -> bool:
    """Whether an SVG image (WeasyPrint's SVGImage) is shapes only: no text, image, gradient,
    pattern, clip, mask, filter, marker or reference (a ``url(``), which could draw differently
    with where the drawing is (the stream's matrix) or add resources of their own."""
    root = getattr(getattr(getattr(image, "_svg", None), "tree", None), "_etree_node", None)
    if root is None:
        return False
    for element in root.iter():
        if not isinstance(element.tag, str) or element.tag.rpartition("}")[2] not in _SVG_PLAIN_TAGS:
            return False
        for name, value in element.attrib.items():
            name = name.rpartition("}")[2]
            if "url(" in value or name in ("clip-path", "mask", "filter", "href") or name.startswith("marker"):
                return False
    return True


def _svg_drawings_kept() -> None:
    """WeasyPrint's ``SVGImage.draw`` giving again what it drew before for the same image at the
    same size into a new, untouched group (a background image is drawn in a group of its own):
    its operators and the graphics states it added. The notes' ruled lines are an SVG drawn on
    every handout and large print, and WeasyPrint walked the SVG's tree and parsed its path each
    time. Only an SVG of shapes alone is kept (:func:`_plain_svg`), and only when the drawing
    added nothing but operators and graphics states (no font, image, pattern or shading) and
    left the stream's matrix as it found it. 1.7% fewer instructions (callgrind: 12 handouts,
    their large print and a booklet part, 1.7388e9 against 1.7093e9). The PDFs are the same
    (tested, against WeasyPrint's method; the 1,000 synthetic topics' outputs)."""
    load_weasyprint()
    from weasyprint import images

    original = images.SVGImage.draw
    if getattr(original, "carepress", False):
        return
    kept = _SVGS

    def draw(self, stream, concrete_width, concrete_height, style):
        fresh = (len(stream._ctm_stack) == 1 and all(getattr(stream, name) is None for name in _SVG_STATE)
                 and stream._current_font is None)
        if not fresh or not _plain_svg(self):
            return original(self, stream, concrete_width, concrete_height, style)
        key = (id(self), concrete_width, concrete_height)
        found = kept.get(key)
        if found is not None and found[0] is self:
            _, operators, states, after = found
            stream.stream.extend(operators)
            for name, value in states:  # each a dictionary of its own, as WeasyPrint makes it
                stream._resources["ExtGState"].setdefault(name, type(value)(value))
            for name, value in zip(_SVG_STATE, after):
                setattr(stream, name, value)
            return None
        resources = {name: dict(value) for name, value in stream._resources.items() if isinstance(value, dict)}
        start, fonts, images_ = len(stream.stream), len(stream._fonts), len(stream._images)
        result = original(self, stream, concrete_width, concrete_height, style)
        added = {name: [(k, v) for k, v in value.items() if k not in resources.get(name, {})]
                 for name, value in stream._resources.items() if isinstance(value, dict)}
        if (not any(entries for name, entries in added.items() if name != "ExtGState")
                and len(stream._fonts) == fonts and len(stream._images) == images_ and len(stream._ctm_stack) == 1
                and len(kept) < 256):
            kept[key] = (self, stream.stream[start:], added.get("ExtGState", []),
                         tuple(getattr(stream, name) for name in _SVG_STATE))
        return result

    images.SVGImage.draw = _ours(draw, original)
    draw.kept = kept


def _page_styles_shared() -> None:
    """WeasyPrint's ``set_page_type_computed_styles`` giving a page the computed styles (its own
    and its margin boxes') of an earlier page of the same document that the same ``@page`` rules
    match, instead of cascading and computing them again: a page type holds its side, index and
    name, so every page of a document was a new one, and every property of its page and footer
    boxes was computed again, page after page (a handout's footer, in each of twelve handouts
    laid out together). Which rules match a page is what WeasyPrint's ``add_page_declarations``
    asks of each selector (``_page_type_match``); the same rules give the same declarations, in
    the same order, so the same computed values (a page's style inherits from the root element,
    the same for all pages; what layout later writes into a page's or margin box's style is the
    same for every page: its counters made standard, its overflow). 3.9% fewer instructions
    (callgrind: 12 handouts, their large print and a booklet part, 1.8101e9 against 1.7388e9).
    The PDFs are the same (tested, against WeasyPrint's function, with pages that match other
    rules too: first, left, right, named; the 1,000 synthetic topics' outputs)."""
    load_weasyprint()
    from weasyprint.layout import page

    original = page.set_page_type_computed_styles
    if getattr(original, "carepress", False):
        return

    def set_page_type_computed_styles(page_type, html, style_for):
        matched = tuple(style_for._page_type_match(selector[2], page_type)
                        for sheet, _origin, _specificity in style_for._sheets
                        for _rule, selectors, _declarations in sheet.page_rules for selector in selectors)
        shared = style_for.__dict__.setdefault("carepress_page_styles", {})
        found = shared.get(matched)
        computed = style_for._computed_styles
        if found is None:
            original(page_type, html, style_for)
            shared[matched] = [(pseudo_type, computed[page_type, pseudo_type]) for pseudo_type in [None] + [
                pseudo_type for element, pseudo_type in style_for.get_cascaded_styles()
                if pseudo_type and element == page_type]]
            return
        for pseudo_type, style in found:
            computed[page_type, pseudo_type] = style

    page.set_page_type_computed_styles = _ours(set_page_type_computed_styles, original)


def _dictionaries_written_directly() -> None:
    """pydyf's ``Dictionary.data`` and ``Array.data`` writing a key or value that is exactly
    bytes (a name, a reference), a string or an integer themselves, as pydyf's ``_to_bytes``
    writes it (the bytes as they are; ``str(value)`` in ASCII), without a call to it for each:
    the many small objects of a tagged PDF (its structure elements, their kids, the fonts' and
    pages' dictionaries) are most of a handout's objects. Anything else (a float, an object, a
    subclass) goes through ``_to_bytes``. 1.1% fewer instructions (callgrind, as above: 1.8306e9
    against 1.8101e9). The files are the same (tested, against pydyf's own)."""
    import pydyf

    if getattr(pydyf.Dictionary.data.fget, "carepress", False):
        return
    to_bytes = pydyf._to_bytes

    def dictionary_data(self):
        parts = []
        for key, value in self.items():
            kind = value.__class__
            parts.append(b"/" + (key.encode("ascii") if key.__class__ is str else to_bytes(key)) + b" " + (
                value if kind is bytes else str(value).encode("ascii") if kind is str or kind is int
                else to_bytes(value)))
        return b"<<" + b"".join(parts) + b">>"

    def array_data(self):
        return b"[" + b" ".join([
            child if child.__class__ is bytes else str(child).encode("ascii")
            if child.__class__ is str or child.__class__ is int else to_bytes(child) for child in self]) + b"]"

    for owner, made in ((pydyf.Dictionary, dictionary_data), (pydyf.Array, array_data)):
        owner.data = property(_ours(made, owner.data))


def _objects_serialised_once() -> None:
    """pydyf's ``PDF.write`` making each object's data once, where it makes it twice in the file
    WeasyPrint asks for (compressed, with an identifier): once to write the object, and again,
    every object, to hash them all for the identifier; a stream's data is its deflated bytes, so
    every stream, fonts and page contents included, was deflated twice. The second time gives the
    same bytes as the first (nothing changes an object while the file is written), so the file is
    the same (tested, against pydyf's own, for every kind of PDF). (See _rewritten: another
    release's source leaves pydyf's method.)"""
    import pydyf

    _install(pydyf.PDF, "write", pydyf, "write", _WRITE_ONCE, within="PDF")


# Where WeasyPrint's draw_first_line starts a run's glyphs: it then reads each glyph's id, width and
# offsets through cffi, one attribute at a time, and builds the run's string a piece at a time.
_GLYPHS_START = """        string += '<'
        for i, glyph_info in enumerate(glyphs_info[0:num_glyphs]):
"""
_GLYPHS_AT_ONCE = """        string += '<'
        # carepress: a run of an outline font whose glyphs are all drawn as they are (no empty or
        # unknown glyph, none raised or lowered) read at once, as plain integers (each
        # PangoGlyphInfo is five 32-bit ints: glyph, width, x offset, y offset, attributes), and
        # written as the loop below writes it; any other run goes through the loop
        at_once = False
        if num_glyphs and GLYPH_INFO_INTS and not (font.bitmap or font.svg or font.png or font.colr):
            values = ffi.unpack(ffi.cast('gint *', glyphs_info), 5 * num_glyphs)
            ids = values[0::5]
            if min(ids) >= 0 and max(ids) < pango.PANGO_GLYPH_EMPTY and not any(values[3::5]):
                at_once = True
                to_unicode, widths, pieces = font.to_unicode, font.widths, []
                # a glyph not moved, of a width and size drawn before in this document: its
                # piece and advance as they were made then
                drawn = font.__dict__.setdefault('carepress_drawn', {})
                for i, glyph_id in enumerate(ids):
                    if glyph_id not in to_unicode:
                        offset = glyph_item.item.offset
                        t1 = clusters[i]
                        if glyph_item.item.analysis.level % 2:  # rtl
                            t2 = glyph_item.item.length if i == 0 else clusters[i-1]
                        else:
                            t2 = glyph_item.item.length if i == num_glyphs-1 else clusters[i+1]
                        utf8_text = utf8_text or textbox.pango_layout.text.encode()
                        to_unicode[glyph_id] = utf8_text[offset+t1:offset+t2].decode()
                    unmoved = not values[5 * i + 2]
                    if unmoved:
                        known = drawn.get((glyph_id, values[5 * i + 1], font_size))
                        if known is not None:
                            pieces.append(known[0])
                            x_advance += known[1]
                            continue
                    offset = values[5 * i + 2] / font_size
                    if offset:
                        pieces.append(f'>{-offset}<')
                    piece = f'{glyph_id:04x}'
                    if glyph_id in widths:
                        logical_width = widths[glyph_id]
                    else:
                        pango.pango_font_get_glyph_extents(
                            pango_font, glyph_id, stream.ink_rect, stream.logical_rect)
                        logical_width = widths[glyph_id] = round(
                            stream.logical_rect.width * 1000 * FROM_UNITS / font_size)
                    kerning = logical_width + offset - values[5 * i + 1] * 1000 * FROM_UNITS / font_size
                    if kerning:
                        piece += f'>{int(kerning)}<'
                    advance = (logical_width + offset - kerning) / 1000
                    pieces.append(piece)
                    x_advance += advance
                    if unmoved:
                        drawn[glyph_id, values[5 * i + 1], font_size] = piece, advance
                string += ''.join(pieces)
        for i, glyph_info in enumerate(() if at_once else glyphs_info[0:num_glyphs]):
"""


# Where draw_first_line puts the Pango layout it draws in single-paragraph mode: a change that lays
# the text out again, so a layout kept from breaking the line (_layouts_kept_to_draw), whose text
# has no paragraph separator for the mode to change anything about, is drawn as it is.
_SINGLE_PARAGRAPH = "    pango.pango_layout_set_single_paragraph_mode(textbox.pango_layout.layout, True)\n"
_SINGLE_PARAGRAPH_KEPT = ("    if not textbox.pango_layout.__dict__.get('carepress_as_kept'):  # carepress\n    "
                          + _SINGLE_PARAGRAPH)


def _glyphs_read_at_once() -> None:
    """WeasyPrint's ``draw_first_line`` reading a run's glyphs at once. WeasyPrint reads each
    glyph's id, width and offsets through cffi, an attribute at a time, and adds to the run's
    string a piece at a time. A run of an outline font whose glyphs are all drawn as they are
    (no empty or unknown glyph, none raised or lowered: every run of our fonts' text) is read as
    one list of integers and written as WeasyPrint's loop writes it, the same arithmetic in the
    same order; any other run goes through WeasyPrint's loop.
    The PDFs are the same (tested, against WeasyPrint's function); 3.0% fewer instructions
    (callgrind: 12 handouts, their large print and a booklet part). A glyph not moved (no
    offset) of a width and size already drawn in the document is given the piece of the string
    and the advance made for it then (the same arithmetic, done once): 3.9% fewer again
    (1.6504e9 against 1.5855e9). (See _rewritten: another release's source leaves WeasyPrint's
    function.)"""
    load_weasyprint()
    from weasyprint.draw import text
    from weasyprint.text.ffi import ffi

    ints = ffi.sizeof("PangoGlyphInfo") == 5 * ffi.sizeof("gint")
    _install(text, "draw_first_line", text, "draw_first_line", [(_GLYPHS_START, _GLYPHS_AT_ONCE),
                                                                (_SINGLE_PARAGRAPH, _SINGLE_PARAGRAPH_KEPT)],
             names={"GLYPH_INFO_INTS": ints})


# Where WeasyPrint's Layout.setup (run for every Pango layout: twice for each line, to lay it out
# and to draw it) makes a Pango context and a font description for the style, anew each time.
_SETUP_LANGUAGE = """        font_map = style.font_config.font_map
        pango_context = ffi.gc(
            pango.pango_font_map_create_context(font_map),
            gobject.g_object_unref)
        pango.pango_context_set_round_glyph_positions(pango_context, False)
        pango.pango_context_set_base_dir(
            pango_context, PANGO_DIRECTION[style['direction']])

        if style['font_language_override'] != 'normal':
            lang_p, lang = unicode_to_char_p(LST_TO_ISO.get(
                style['font_language_override'].lower(),
                style['font_language_override']))
        elif style['lang']:
            lang_p, lang = unicode_to_char_p(style['lang'])
        else:
            lang = None
            self.language = pango.pango_language_get_default()
        if lang:
            self.language = pango.pango_language_from_string(lang_p)
            pango.pango_context_set_language(pango_context, self.language)

"""
_SETUP_DESCRIPTION = """        assert not isinstance(style['font_family'], str), (
            'font_family should be a list')
        font_description = get_font_description(style)
"""
_SETUP_KEPT = """        # carepress: the context (and language) and the font description made once for each
        # set of the values they are made from, and kept with the font configuration
        made = style.font_config.__dict__.setdefault('carepress_setups', {})
        context_key = (style['direction'], style['font_language_override'], style['lang'])
        if context_key not in made:
""" + "".join("    " + line if line.strip() else line for line in _SETUP_LANGUAGE.splitlines(keepends=True)) + """\
            made[context_key] = pango_context, self.language
        pango_context, self.language = made[context_key]
        assert not isinstance(style['font_family'], str), (
            'font_family should be a list')
        description_key = (tuple(style['font_family']), style['font_style'], style['font_stretch'],
                           style['font_weight'], style['font_size'], style['font_variant_caps'],
                           str(style['font_variation_settings']))
        if description_key not in made:
            made[description_key] = get_font_description(style)
        font_description = made[description_key]
"""


def _pango_setups_kept() -> None:
    """WeasyPrint's ``Layout.setup`` making a Pango context (with its language) and a font
    description once for each set of the style values they are made from, not for every layout
    (two for each line of text: one to lay it out, one to draw it). Nothing changes either once
    made (a layout copies the description and only reads the context), so a layout made with
    them is the one WeasyPrint makes. The PDFs are the same (tested, against WeasyPrint's
    method); 1.7% fewer instructions (callgrind, as above). (See _rewritten: another release's
    source leaves WeasyPrint's method.)"""
    load_weasyprint()
    from weasyprint.text import line_break

    _install(line_break.Layout, "setup", line_break, "setup", [(_SETUP_LANGUAGE + _SETUP_DESCRIPTION, _SETUP_KEPT)],
             within="Layout")


def _struts_kept() -> None:
    """WeasyPrint's ``strut`` (a style's line height and baseline, asked for every line box, and
    for every inline box of it) kept with the style it was asked for once made. WeasyPrint
    keeps it too, but under a key it makes anew each time: the text of a tuple of fourteen of
    the style's values. A style's values do not change once computed (WeasyPrint computes
    each on first use, and a style it changes is a copy), so the strut kept is the one
    WeasyPrint would make again: the same PDFs (tested, against WeasyPrint's function), 1.4%
    fewer instructions (callgrind: 12 handouts, their large print and a booklet part)."""
    load_weasyprint()
    from weasyprint.css import computed_values, units
    from weasyprint.layout import inline
    from weasyprint.text import line_break

    original = line_break.strut
    if getattr(original, "carepress", False):
        return

    def strut(style):
        kept = getattr(style, "carepress_strut", None)
        if kept is None:
            kept = original(style)
            try:
                style.carepress_strut = kept
            except AttributeError:  # a style with no attributes of its own: made each time
                pass
        return kept

    _put_where((line_break, inline, units, computed_values), "strut", original, _ours(strut, original))


# Where WeasyPrint's split_first_line, having broken a line, lays out the line again with the next
# word added, in case Pango broke it too early ("Step #3"): for nearly every line of a paragraph.
_RETRY = "        if space_collapse and second_line_text[break_point or -1] == ' ':\n"
_RETRY_IF_IT_MIGHT_FIT = (
    "        if space_collapse and second_line_text[break_point or -1] == ' ' and not (  # carepress\n"
    "                first_line_text and CANNOT_FIT(layout, first_line, style, max_width, resume_index, next_word)):\n")


# Where split_first_line takes the start of a paragraph to lay out, to find its first line: as many
# characters as four times the width holds of the font's size (about two lines of our text).
_SHORT_TEXT = "            short_text = text[:int(max_width / style['font_size'] * ratio)]\n"
_SHORT_TEXT_OURS = "            short_text = text[:int(max_width / style['font_size'] * SHORT_TEXT_RATIO)]  # carepress\n"
_SHORT_TEXT_FITS = """        first_line, resume_index = layout.get_first_line()
        if resume_index is None and short_text != text:
"""
_SHORT_TEXT_FITS_OURS = """        first_line, resume_index = layout.get_first_line()
        if (resume_index is None and short_text != text and SHORT_TEXT_RATIO < ratio
                and style['font_size'] * ratio <= max_width):
            # carepress: the shorter start fits on one line: WeasyPrint's start next, then the text
            short_text = text[:int(max_width / style['font_size'] * ratio)]
            layout.set_text(short_text)
            first_line, resume_index = layout.get_first_line()
        if resume_index is None and short_text != text:
"""
SHORT_TEXT_RATIO = 2.6  # about 1.3 lines of our text: a first line and the next word


def _cannot_fit(layout, first_line, style, max_width, resume_index, next_word) -> bool:
    """Whether a line broken by Pango (``first_line`` of ``layout``, the next line starting at
    byte ``resume_index`` with ``next_word``) certainly leaves no room for that word: the first
    line's width (its logical width, the space after it or not) and the word's glyphs' advances
    as Pango shaped them on the next line add up to more than the width available by half the
    font's size, more than any change in the word's last glyph could take back once the word
    ends the text (the only glyph shaped differently then). Then split_first_line's retry with
    the word added would give the line it has: it is not made. Only for plain left-to-right text
    (no justification, letter or word spacing, hyphenation or breaking inside words)."""
    ffi, pango = _PANGO["ffi"], _PANGO["pango"]
    if (layout.justification_spacing or style["letter_spacing"] not in ("normal", 0) or style["word_spacing"]
            or style["hyphens"] == "auto" or style["overflow_wrap"] != "normal" or style["word_break"] != "normal"
            or "\xad" in layout.text):
        return False
    line = pango.pango_layout_get_line_readonly(layout.layout, 1)
    if line == ffi.NULL:
        return False
    end, advance = resume_index + len(next_word.encode()), 0
    run = line.runs
    while run != ffi.NULL:
        glyph_item = run.data
        run = run.next
        item = glyph_item.item
        if item.analysis.level % 2:
            return False  # right to left: its glyphs are not in the text's order
        glyphs = glyph_item.glyphs
        clusters, infos, offset = glyphs.log_clusters, glyphs.glyphs, item.offset
        for i in range(glyphs.num_glyphs):
            if offset + clusters[i] >= end:
                run = ffi.NULL
                break
            advance += infos[i].geometry.width
    width, _ = _PANGO["line_size"](first_line, style)
    return width + advance * _PANGO["FROM_UNITS"] > max_width + style["font_size"] / 2


_PANGO: dict = {}  # WeasyPrint's cffi objects and line_size, for _cannot_fit (set as it is installed)


def _retries_only_where_a_word_might_fit() -> None:
    """WeasyPrint's ``split_first_line`` laying a broken line out again with the next word added
    (its "Step #3", for when Pango broke the line too early) only when the word might fit
    (:func:`_cannot_fit`). When it does not, that retry gives the line, its length and where the
    next line starts as they were, and everything after it sets the layout's text anew; so
    leaving it out gives the same result. And it lays out a shorter start of the text to find
    the first line (``SHORT_TEXT_RATIO``: about 1.3 lines of our text, where WeasyPrint takes
    about two), then WeasyPrint's start and then the whole text if that start fits on one line
    (a paragraph of narrow letters): what WeasyPrint's function gives does not depend on how
    much of the text it starts with, only how much Pango shapes does (3.2% fewer instructions,
    1.7166e9 against 1.6622e9). The same PDFs (tested, against WeasyPrint's function;
    the 1,000 synthetic topics' outputs). 71% of the retries are left out (1,218 of 1,706 for 120
    handouts and 4 booklet parts), 2.5% fewer instructions (callgrind: 12 handouts, their large
    print and a booklet part, 1.8982e9 against 1.8505e9). Installed before :func:`_lines_kept`,
    which keeps what it gives. (See _rewritten: another release's source leaves WeasyPrint's
    function.)"""
    load_weasyprint()
    from weasyprint.layout import inline, preferred
    from weasyprint.text import line_break

    from weasyprint.text import ffi

    _PANGO.update(ffi=ffi.ffi, pango=ffi.pango, FROM_UNITS=ffi.FROM_UNITS, line_size=line_break.line_size)
    original = line_break.split_first_line
    if getattr(original, "carepress", False):
        return
    function = _rewritten(line_break, "split_first_line", [(_RETRY, _RETRY_IF_IT_MIGHT_FIT), (_SHORT_TEXT, _SHORT_TEXT_OURS),
                                                                (_SHORT_TEXT_FITS, _SHORT_TEXT_FITS_OURS)],
                          names={"CANNOT_FIT": _cannot_fit, "SHORT_TEXT_RATIO": SHORT_TEXT_RATIO})
    if function is None:
        return
    _put_where((line_break, inline, preferred), "split_first_line", original, function)


# Every style value WeasyPrint's line breaking reads (text/line_break.py and the font description
# and features of text/fonts.py that Layout.setup makes): what split_first_line's result depends on,
# with the text, the width and the font configuration (its context, in this release, only holds
# the hyphenation dictionaries, used only for "hyphens: auto", which is never kept).
LINE_PROPERTIES = (
    "direction", "font_family", "font_feature_settings", "font_kerning", "font_language_override",
    "font_size", "font_stretch", "font_style", "font_variant_alternates", "font_variant_caps",
    "font_variant_east_asian", "font_variant_ligatures", "font_variant_numeric", "font_variant_position",
    "font_variation_settings", "font_weight", "hyphenate_character", "hyphenate_limit_chars",
    "hyphenate_limit_zone", "hyphens", "lang", "letter_spacing", "line_height", "overflow_wrap", "tab_size",
    "text_decoration_line", "white_space", "word_break", "word_spacing")
LINES_KEPT_UP_TO = 120  # characters of text: a paragraph's is longer, and seldom laid out twice
LINES_KEPT_AT_MOST = 20_000  # lines kept in a process before they are let go
_LINES: dict = {}  # what _lines_kept keeps (it holds font configurations: see _free)


def _lines_kept() -> None:
    """WeasyPrint's ``split_first_line`` (where a line of text breaks, through Pango: about a
    sixth of a handout's time) kept for a short text it has broken before with the same style
    values, width and font configuration. What every page has is broken again and again: the
    masthead, "Questions for my care team", the footer's "Page 1 of 1", in each of a worker's
    handouts and their large print (about 1,860 different texts in 3,460 calls for 240 handouts
    and 8 booklet parts): 1.0% fewer instructions (callgrind: 12 handouts, their large print and a
    booklet part, 1.9915e9 against 1.9720e9). Its result is a function of what is kept in the key (``LINE_PROPERTIES``: every value its module and the
    font functions it calls read), and its layout comes back deactivated (text, width, direction
    and font metrics, no Pango object): each caller is given a copy of its own. The PDFs are the
    same (tested, against WeasyPrint's function)."""
    load_weasyprint()
    from weasyprint.layout import inline, preferred
    from weasyprint.text import line_break

    original = line_break.split_first_line
    if hasattr(original, "kept"):
        return
    kept = _LINES
    new = object.__new__

    def split_first_line(text, style, context, max_width, justification_spacing, is_line_start=True,
                         minimum=False):
        if len(text) > LINES_KEPT_UP_TO or style["hyphens"] == "auto":
            return original(text, style, context, max_width, justification_spacing, is_line_start, minimum)
        try:
            key = (text, max_width, justification_spacing, is_line_start, minimum, style.font_config,
                   *[style[name] for name in LINE_PROPERTIES])
            found = kept.get(key)
        except TypeError:  # a value that cannot be a key (a list)
            return original(text, style, context, max_width, justification_spacing, is_line_start, minimum)
        if found is None:
            made = original(text, style, context, max_width, justification_spacing, is_line_start, minimum)
            if len(kept) >= LINES_KEPT_AT_MOST:
                kept.clear()
            values = {name: value for name, value in made[0].__dict__.items() if name != "carepress_kept"}
            found = kept[key] = (made[0].__class__, values, *made[1:])
            return made
        layout = new(found[0])
        layout.__dict__.update(found[1])
        return (layout, *found[2:])

    _ours(split_first_line, original)
    split_first_line.kept = kept
    _put_where((line_break, inline, preferred), "split_first_line", original, split_first_line)


def _read_from_the_tree() -> None:
    """WeasyPrint's ``render`` reading a document's metadata (``get_html_metadata``) and finding
    its stylesheets (``find_stylesheets``, its style and link elements) through cssselect2's
    ``query_all``, which compiles the selectors anew for every document and walks its tree
    element by element in Python: for a tree expat parsed (:func:`_parsed`), the metadata is read
    through :class:`_Tree` (ElementTree's ``iter``, in C) and a document whose text has no
    ``<style`` or ``<link`` has no stylesheet to find. 1.1% fewer instructions (callgrind: 12
    handouts, their large print and a booklet part, 1.9119e9 against 1.8906e9). The same PDFs
    (tested, against WeasyPrint's functions; a document with a style element still has it
    applied)."""
    load_weasyprint()
    from weasyprint import css, document

    if getattr(document.get_html_metadata, "carepress", False):
        return
    metadata, sheets = document.get_html_metadata, css.find_stylesheets

    def get_html_metadata(html):
        if getattr(html.wrapper_element, "carepress_expat", False):
            return metadata(_Tree(html.etree_element, html.url_fetcher))
        return metadata(html)

    def find_stylesheets(wrapper_element, *args, **kwargs):
        if getattr(wrapper_element, "carepress_no_sheets", False):
            return iter(())
        return sheets(wrapper_element, *args, **kwargs)

    document.get_html_metadata = _ours(get_html_metadata, metadata)
    css.find_stylesheets = _ours(find_stylesheets, sheets)


PARAGRAPH_SEPARATORS = "\n\r\x0b\x0c\x85\u2028\u2029"


def _layouts_kept_to_draw() -> None:
    """WeasyPrint's ``Layout`` keeping the Pango layout of a line it has broken until the line is
    drawn. WeasyPrint lets it go once the line is broken (``deactivate``) and makes it again to
    draw the line (``reactivate``: a new Pango layout with the same style, the same text set again,
    laid out again by Pango). A layout is kept only when making it again would give the same one:
    no justification, letter or word spacing (whose attributes set_text adds to the layout's), and
    drawn with the very style it was made with; any other is made again as WeasyPrint does. Its
    text is drawn as Pango laid it out, without the single-paragraph mode draw_first_line sets
    (which would lay it out again), when it has no paragraph separator for that mode to change.
    3.2% fewer instructions (callgrind: 12 handouts, their large print and a booklet part,
    1.9791e9 against 1.9153e9; a line's layout made again was 5.5 against 70 us). The PDFs are
    the same (tested, against WeasyPrint's methods; the 1,000 synthetic topics' outputs)."""
    load_weasyprint()
    from weasyprint.text import line_break

    layout_class = line_break.Layout
    deactivate, reactivate = layout_class.deactivate, layout_class.reactivate
    if getattr(deactivate, "carepress", False):
        return

    def kept_deactivate(self):
        self.__dict__.pop("carepress_as_kept", None)
        style = self.style
        if not self.justification_spacing and not style["word_spacing"] and style["letter_spacing"] in ("normal", 0):
            self.carepress_kept = (self.layout, style, self.language)
        deactivate(self)

    def kept_reactivate(self, style):
        kept = self.__dict__.pop("carepress_kept", None)
        if kept is not None and kept[1] is style:
            self.layout, self.style, self.language = kept
            # drawn as it is (see _SINGLE_PARAGRAPH) when single-paragraph mode changes nothing
            self.carepress_as_kept = not any(separator in self.text for separator in PARAGRAPH_SEPARATORS)
            return
        reactivate(self, style)

    layout_class.deactivate = _ours(kept_deactivate, deactivate)
    layout_class.reactivate = _ours(kept_reactivate, reactivate)


# Where WeasyPrint's ComputedStyle.__missing__ (a property's computed value, the first time it is
# asked for) starts: every property, even one no rule sets, then takes its whole path.
_MISSING_START = "        if key == 'float':\n"
_MISSING_INITIAL = """        # carepress: a property no rule sets, not inherited, whose initial value is its computed
        # value and needs nothing done (what the path below gives it)
        if key not in NOT_PLAIN and key not in self.cascaded and key[:2] != '__' and key[:16] != 'text_decoration_':
            value = self[key] = INITIAL_VALUES[key]
            return value
""" + _MISSING_START


def _initial_values_straight() -> None:
    """WeasyPrint's ``ComputedStyle.__missing__`` giving a property no rule sets, which is not
    inherited and whose initial value is its computed value, that value at once. WeasyPrint took
    such a property (most of the four hundred asked for a handout) through its whole path: the
    cascade looked up, its logical counterpart, its name spelled with hyphens, a check for math
    functions, to store the same value. Left to that path: a property set by a rule, inherited,
    computed from its initial value, with a logical counterpart, a custom property, a text
    decoration, and ``page``, ``position``, ``float`` and ``display`` (which it treats apart).
    The PDFs are the same (tested, against WeasyPrint's method); 1.0% fewer instructions
    (callgrind: 12 handouts, their large print and a booklet part). A physical property's
    logical counterpart is named once for each direction (_LOGICAL_KEY), not for each style:
    1.1% fewer again (1.8505e9 against 1.8306e9). (See _rewritten: another release's source leaves WeasyPrint's method.)"""
    load_weasyprint()
    from weasyprint import css
    from weasyprint.css.computed_values import PHYSICAL_FUNCTIONS
    from weasyprint.css.properties import INHERITED, INITIAL_NOT_COMPUTED

    not_plain = frozenset(INHERITED) | frozenset(INITIAL_NOT_COMPUTED) | frozenset(PHYSICAL_FUNCTIONS) | {
        "page", "position", "float", "display"}
    _install(css.ComputedStyle, "__missing__", css, "__missing__",
             [(_MISSING_START, _MISSING_INITIAL), (_LOGICAL_KEY, _LOGICAL_KEY_KEPT)],
             within="ComputedStyle", names={"NOT_PLAIN": not_plain, "LOGICAL_KEYS": _LOGICAL_KEYS})


# Where ComputedStyle.__missing__ names a physical property's logical counterpart (margin_left's
# margin_inline_start): a function of the property and the direction alone, which WeasyPrint calls
# (a partial, its comparisons and an f-string) for every physical property of every style.
_LOGICAL_KEY = "            logical_key = logical_function(block='ttb', inline=self['direction'])\n"
_LOGICAL_KEY_KEPT = """            # carepress: each property's logical counterpart, for each direction, named once
            logical_key = LOGICAL_KEYS.get((key, self['direction']))
            if logical_key is None:
                logical_key = LOGICAL_KEYS[key, self['direction']] = logical_function(
                    block='ttb', inline=self['direction'])
"""
_LOGICAL_KEYS: dict = {}


class _Styles(NamedTuple):
    """Fonts and parsed stylesheets for one paper size: made once per process (most of a
    worker's start-up after importing WeasyPrint), shared by every Renderer."""

    fetches: Fetches
    fetcher: object
    fonts: object  # weasyprint.text.fonts.FontConfiguration
    base: object  # weasyprint.CSS
    large: object
    booklet: object
    overlay: object
    # WeasyPrint's image cache, shared by every document of the process: the notes' ruled lines
    # and a topic's QR code are parsed once, not for each handout, large print and booklet part
    images: dict
    together: object  # handouts laid out as one document: each starts a page of its own


_STYLES: dict[str, _Styles] = {}
# Handouts laid out together (Renderer.handouts): each starts a page, and only single-page
# handouts are kept from it, so the footer is the one a single page shows, and the running
# header is the one a first page shows: none (its strings are "first-except"). Without them
# WeasyPrint lays out two margin boxes fewer a page (2% of a handout's instructions, counted by
# callgrind; the same bytes, tested).
TOGETHER = ('@page { @top-left { content: none; } @top-right { content: none; }'
            ' @bottom-right { content: "Page 1 of 1"; } } header.masthead { break-before: page; }')


def _styles(paper: str) -> _Styles:
    if paper not in _STYLES:
        load_weasyprint()
        from weasyprint import CSS
        from weasyprint.text.fonts import FontConfiguration

        fetches = Fetches()
        fetcher = make_fetcher(fetches)
        fonts = FontConfiguration()

        def css(name: str, extra: str = "") -> "CSS":
            text = (PDF_TEMPLATES / name).read_text(encoding="utf-8") + extra
            return CSS(string=text, base_url=ASSET_BASE, url_fetcher=fetcher, font_config=fonts)

        _STYLES[paper] = _Styles(fetches, fetcher, fonts, css("base.css", f"@page {{ size: {PAPER[paper]}; }}"),
                                 css("large.css"), css("booklet.css"), css("overlay.css"), {},
                                 CSS(string=TOGETHER, base_url=ASSET_BASE, url_fetcher=fetcher, font_config=fonts))
    return _STYLES[paper]


_NOTES = re.compile(r"^::(?:footnote|note)-[a-z-]+ \{[^}\n]*\}\n", re.M)
_MARKER = re.compile(r"^::marker \{", re.M)
_PAGE_AREA = re.compile(r"^  @([a-z-]+) +\{[^}\n]*\}\n", re.M)
_COUNTER_STYLE = re.compile(r"^@counter-style [^{\n]+\{[^}\n]*\}\n", re.M)


@lru_cache(maxsize=1)
def _user_agent() -> tuple:
    """The user-agent stylesheets our documents are laid out with: WeasyPrint's, less what no
    document of ours can use and every one paid for.

    - A rule for a pseudo-element with no element before it gives every element of a document
      a style of that pseudo-element, computed in full: ``::marker`` (WeasyPrint's only rule
      for markers: here ``li::marker``, as ``li`` is the only list item our stylesheets make)
      and the five for footnotes and notes, which we never make (none is ``float: footnote``).
    - Every page computes a style for each margin box and area the ``@page`` rule names: here
      only the margin boxes our stylesheets use (read from them), not all sixteen and the
      footnote and note areas.
    - The ``@counter-style`` rules are left out of the text parsed here: a document takes its
      counter styles from WeasyPrint's (``_ua_counter_style``), which has them all.

    5.0% fewer instructions for 24 handouts, their large print and a booklet part (callgrind:
    4.838e9 against 4.597e9); the same PDFs (tested against WeasyPrint's own stylesheet for
    every kind of PDF on both papers). For a WeasyPrint whose stylesheet reads otherwise, its own.
    """
    from weasyprint import CSS
    from weasyprint.css.counters import CounterStyle
    from weasyprint.html import UA, UA_STYLESHEET

    ours = "".join(path.read_text(encoding="utf-8") for path in sorted(PDF_TEMPLATES.glob("*.css"))) + TOGETHER
    used = set(re.findall(r"@((?:top|bottom|left|right)-[a-z-]+)", ours))
    text, notes = _NOTES.subn("", UA)
    text, markers = _MARKER.subn("li::marker {", text)
    text, areas = _PAGE_AREA.subn(lambda m: m.group(0) if m.group(1) in used else "", text)
    text, counters = _COUNTER_STYLE.subn("", text)
    if (notes, markers) != (5, 1) or areas < 16 or not counters or re.search(r"^::", text, re.M):
        return (UA_STYLESHEET,)
    return (CSS(string=text, counter_style=CounterStyle()),)


_OWN_UA: list = []  # [_user_agent()'s stylesheets] once this process lays out with them


def _use_own_user_agent() -> None:
    """Lay out this process's documents with :func:`_user_agent`'s stylesheets from now on.
    Parsing them takes 50 ms, so a process with many documents makes them (a first build's
    workers as they warm up, a worker given more than a few documents) and a rebuild's worker,
    with a booklet part and a handout or two, lays them out with WeasyPrint's own: the same
    PDFs either way."""
    if not _OWN_UA:
        _OWN_UA.append(list(_user_agent()))


class Renderer:
    """WeasyPrint with this process's fonts and parsed stylesheets for ``paper`` (see _styles)."""

    def __init__(self, paper: str, epoch: int):
        _deflate_level_6()
        _percentages_resolved_inline()
        _margin_boxes_only_where_generated()
        _text_runs_in_their_element()
        _objects_serialised_once()
        _dictionaries_written_directly()
        _glyphs_read_at_once()
        _pango_setups_kept()
        _struts_kept()
        _initial_values_straight()
        _retries_only_where_a_word_might_fit()
        _lines_kept()
        _layouts_kept_to_draw()
        _read_from_the_tree()
        _page_styles_shared()
        _svg_drawings_kept()
        _subsets_kept()
        styles = _styles(paper)
        self.fetches, self.fetcher, self.fonts = styles.fetches, styles.fetcher, styles.fonts
        self.base, self.large, self.booklet, self.overlay = styles.base, styles.large, styles.booklet, styles.overlay
        self.images = styles.images
        self.together = styles.together
        self.epoch = epoch

    def pdf(self, html: str, stylesheets: list, what: str, kind: str = "document") -> tuple[bytes, int]:
        """One PDF. ``kind``: a tagged PDF/UA "document", a booklet "part" (tagged, whole fonts,
        which the assembly stores once) or the booklet's "overlay" (untagged: drawn as an artifact;
        whole fonts too, so any digit the assembly writes into a page number is in them)."""
        stamp = epoch_datetime(self.epoch).strftime("%Y-%m-%dT%H:%M:%SZ")
        tagged = {"pdf_variant": "pdf/ua-1", "pdf_tags": True} if kind != "overlay" else {}
        with _captured_log() as log, _source_date_epoch(self.epoch):
            document = _parsed(html, self.fetcher).render(stylesheets=stylesheets, font_config=self.fonts,
                                                          cache=self.images, **tagged)
            document.metadata.created = stamp
            document.metadata.modified = stamp
            data = document.write_pdf(**tagged, pdf_identifier=what.encode("utf-8"), full_fonts=kind != "document")
        errors = [r.getMessage() for r in log.records if r.levelno >= logging.ERROR]
        if errors:
            raise CarepressError([error("CP130", f"pdf: {what}: {message}") for message in errors])
        return data, len(document.pages)

    def handouts(self, documents: list["Document"]) -> list[tuple[bytes, int]]:
        """PDFs of several handouts (same stylesheets) laid out as one document, each written
        from its own page: the same bytes as :meth:`pdf` gives each alone (tested), a tenth
        faster. A handout that takes more than one page (its footer would say "Page 1 of 1")
        and a batch that logs an error are rendered one by one instead."""
        from weasyprint.document import DocumentMetadata

        first = documents[0].html
        body = "".join(doc.html[doc.html.index("<body>") + 6:doc.html.rindex("</body>")] for doc in documents)
        html = first[:first.index("<body>")] + "<body>" + body + "</body>\n</html>\n"
        sheets = [getattr(self, name) for name in documents[0].sheets]
        stamp = epoch_datetime(self.epoch).strftime("%Y-%m-%dT%H:%M:%SZ")
        tagged = {"pdf_variant": "pdf/ua-1", "pdf_tags": True}
        out: list[tuple[bytes, int] | None] = [None] * len(documents)
        with _captured_log() as log, _source_date_epoch(self.epoch):
            batch = _parsed(html, self.fetcher).render(stylesheets=[*sheets, self.together], font_config=self.fonts,
                                                       cache=self.images, **tagged)
            failed = any(r.levelno >= logging.ERROR for r in log.records)
            starts = {name: n for n, page in enumerate(batch.pages) for name in page.anchors}
            bounds = [starts.get(f"topic-{doc.path.rsplit('/', 1)[-1][:-4]}") for doc in documents] + [len(batch.pages)]
            for n, doc in enumerate(documents):
                if failed or bounds[n] is None or bounds[n + 1] != bounds[n] + 1:
                    continue  # more than one page (or no anchor): alone, below
                one = batch.copy([batch.pages[bounds[n]]])
                one.metadata = DocumentMetadata(**_metadata(doc.html, self.fetcher))
                one.metadata.created = one.metadata.modified = stamp
                out[n] = one.write_pdf(**tagged, pdf_identifier=doc.path.encode("utf-8")), 1
        if any(r.levelno >= logging.ERROR for r in log.records):
            out = [None] * len(documents)  # each alone, to say which one failed (a write may log too)
        return [done or self.pdf(doc.html, sheets, doc.path, doc.kind) for done, doc in zip(out, documents)]


class _Found(NamedTuple):
    etree_element: ElementTree.Element


class _Tree:
    """What WeasyPrint's ``get_html_metadata`` reads of an HTML object, for a tree expat parsed:
    its root, base URL and fetcher, and its ``title``, ``meta`` and ``link`` elements in document
    order, found by ElementTree's ``iter`` (in C) where cssselect2's ``query_all`` compiled the
    three selectors anew for every call and walked the tree in Python, element by element."""

    def __init__(self, root: ElementTree.Element, fetcher) -> None:
        import weasyprint

        self.etree_element = root
        self.wrapper_element = self
        self.base_url = weasyprint._find_base_url(root, ASSET_BASE)
        self.url_fetcher = fetcher

    def query_all(self, *tags: str):
        return (_Found(element) for element in self.etree_element.iter() if element.tag in tags)


_METADATA_TAGS = ("<title", "<meta", "<link", "<base")


def _metadata(html: str, fetcher) -> dict:
    """WeasyPrint's metadata for one of our documents (``get_html_metadata``: its title,
    description, keywords, authors, language), read through :class:`_Tree`: the same values
    (tested for every kind of PDF; and a handout written from a batch is byte for byte the one
    rendered alone): 1.2% fewer instructions for 12 handouts, their large print and a booklet
    part (callgrind). Only its head is parsed when nothing after the head is an element the
    metadata is read from (``title``, ``meta``, ``link``; and ``base``, for links' URLs): our
    templates put none in a body, and source text is escaped (2.1% fewer instructions again).
    A document expat refuses goes through WeasyPrint's parser."""
    from weasyprint.html import get_html_metadata

    end = html.find("</head>")
    if end > 0 and not any(tag in html[end:] for tag in _METADATA_TAGS):
        html = html[:end] + "</head></html>"
    try:
        root = ElementTree.fromstring(html)
    except ElementTree.ParseError:
        return get_html_metadata(_parsed(html, fetcher))
    return get_html_metadata(_Tree(root, fetcher))


def _parsed(html: str, fetcher):
    """WeasyPrint's HTML object for one of our documents.

    The PDF templates write HTML that is also well-formed XML (void elements closed, only
    numeric character references, source text escaped), which expat, in C, parses into the
    tree WeasyPrint's own pure-Python HTML5 parser builds, twenty-five times faster: a
    twentieth of a handout's rendering time. The PDFs are the same (tested). Anything expat
    refuses goes through WeasyPrint's parser.
    """
    import cssselect2
    import weasyprint

    try:
        root = ElementTree.fromstring(html)
    except ElementTree.ParseError:
        document = weasyprint.HTML(string=html, base_url=ASSET_BASE, url_fetcher=fetcher)
    else:
        document = weasyprint.HTML.__new__(weasyprint.HTML)  # what HTML.__init__ sets, from our tree
        document.base_url = weasyprint._find_base_url(root, ASSET_BASE)
        document.url_fetcher = fetcher
        document.media_type = "print"
        document.wrapper_element = cssselect2.ElementWrapper.from_html_root(root, content_language=None)
        document.etree_element = document.wrapper_element.etree_element
        # read by _read_from_the_tree: the metadata found from the tree, and no stylesheet to find
        # in a document with no style or link element (markup in it is only ever a tag)
        document.wrapper_element.carepress_expat = True
        document.wrapper_element.carepress_no_sheets = "<style" not in html and "<link" not in html
    if _OWN_UA:
        sheets = _OWN_UA[0]
        document._ua_stylesheets = lambda forms=False: sheets  # forms: our documents have none
    return document


@contextmanager
def _source_date_epoch(epoch: int):
    old = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = str(epoch)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SOURCE_DATE_EPOCH", None)
        else:
            os.environ["SOURCE_DATE_EPOCH"] = old


WARM_UP_HTML = ('<!DOCTYPE html><html lang="en"><head><title>warm-up</title></head><body><h1>Warm-up</h1>'
                '<p>Regular, <b>bold</b>, <i>italic</i> and <b><i>both</i></b>.</p></body></html>')


def warm_up(paper: str = "letter", rehearse: bool = True) -> None:
    """Ready a worker before its first document arrives: import WeasyPrint, parse the fonts and
    stylesheets (together about half a second) and, to ``rehearse``, lay out a little text in
    each face, so the first document does not pay for Pango's first use of them. A rebuild's
    worker does not rehearse: its few documents are queued before it has loaded, and the
    rehearsal (4% of the instructions of a worker that then renders a booklet part, a handout
    and its large print: callgrind) would hold the first one back, on the rebuild's path."""
    renderer = _renderer(paper, 0)
    if rehearse:
        _use_own_user_agent()
        renderer.pdf(WARM_UP_HTML, [renderer.base], "warm-up")


_RENDERERS: dict[tuple[str, int], Renderer] = {}


@atexit.register
def _free() -> None:
    """Free WeasyPrint's font configurations before interpreter teardown."""
    _LINES.clear()
    _SVGS.clear()
    _SUBSETS.clear()
    _DEFLATED.clear()
    _RENDERERS.clear()
    _STYLES.clear()


def _renderer(paper: str, epoch: int) -> Renderer:
    """One Renderer per process and settings, reused by every document."""
    key = (paper, epoch)
    if key not in _RENDERERS:
        _RENDERERS[key] = Renderer(paper, epoch)
    return _RENDERERS[key]


class Document(NamedTuple):
    """A PDF to render now (what a worker is sent)."""

    path: str  # output path, or a booklet part's name (PART_PREFIX...)
    html: str
    sheets: tuple[str, ...]  # stylesheet names: Renderer attributes
    kind: str = "document"  # see Renderer.pdf


def render_part(documents: list[Document], paper: str, epoch: int):
    """Render some documents with this process's Renderer: ({path: bytes}, fetches, {path: pages})."""
    renderer = _renderer(paper, epoch)
    if len(documents) > OWN_UA_FROM:
        _use_own_user_agent()
    start = len(renderer.fetches.served), len(renderer.fetches.refused)
    files: dict[str, bytes] = {}
    pages: dict[str, int] = {}
    for group in _together(documents):
        if len(group) > 1:
            made = renderer.handouts(group)
        else:
            made = [renderer.pdf(doc.html, [getattr(renderer, name) for name in doc.sheets], doc.path, doc.kind)
                    for doc in group]
        for doc, (data, count) in zip(group, made):
            files[doc.path], pages[doc.path] = data, count
    return files, Fetches(renderer.fetches.served[start[0]:], renderer.fetches.refused[start[1]:]), pages


def _together(documents: list[Document]) -> list[list[Document]]:
    """Handouts with the same stylesheets in runs of up to TOGETHER_MAX (each run is laid out
    as one: Renderer.handouts), and every other document on its own."""
    runs: dict[tuple[str, ...], list[Document]] = {}
    groups: list[list[Document]] = []
    for doc in documents:
        if doc.kind != "document":
            groups.append([doc])
            continue
        run = runs.setdefault(doc.sheets, [])
        run.append(doc)
        if len(run) == TOGETHER_MAX:
            groups.append(runs.pop(doc.sheets))
    return groups + [run for run in runs.values() if run]


TOGETHER_MAX = 12  # handouts laid out as one document at most
OWN_UA_FROM = 8  # a worker given more documents than this at once lays out with _user_agent()'s
