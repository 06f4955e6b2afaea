"""Text the decoder is trained on and prompted with, read offline from the Python standard library.

Three content domains, chosen so that draft acceptance differs between them:

- ``code``: the standard library's ``.py`` sources (very predictable: indentation, keywords);
- ``prose``: their docstrings plus the few ``.txt``/``.rst`` files shipped with the library;
- ``random``: random-like printable characters from a seeded generator (barely predictable).

Files are split by a hash of their relative path: about one in ten is held out of training and
used for prompts only. Nothing here imports torch, so non-torch backends (HTTP) can reuse
:func:`prompt_text`. The corpus depends on the running Python's standard library, so the models
built from it are identical for every machine with the same Python minor version.
"""

from __future__ import annotations

import ast
import functools
import inspect
import random
import string
import sysconfig
import zlib
from pathlib import Path

from halospec_rl.backends.base import DOMAINS

# Test suites are large, repetitive and full of deliberately odd code; they would dominate the corpus.
_EXCLUDED_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"})
_HELDOUT_EVERY = 10
# Uniform over printable ASCII, space included once: no byte is favoured, so a model's greedy choice
# after random text is near-arbitrary and a draft and a target rarely agree on it (low acceptance).
_RANDOM_ALPHABET = string.ascii_letters + string.digits + string.punctuation + " "
DEFAULT_PROMPT_CHARS = 128


def stdlib_dir() -> Path:
    """Directory of the running interpreter's pure-Python standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


@functools.lru_cache(maxsize=1)
def _library_files() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(python sources, prose text files) as sorted relative paths, so the order is machine-independent."""
    root = stdlib_dir()
    sources, texts = [], []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if _EXCLUDED_DIRS.intersection(rel.parts[:-1]) or not path.is_file():
            continue
        if path.suffix == ".py":
            sources.append(rel.as_posix())
        elif path.suffix in (".txt", ".rst"):
            texts.append(rel.as_posix())
    if not sources:
        raise RuntimeError(f"no Python standard library sources found under {root}")
    return tuple(sorted(sources)), tuple(sorted(texts))


def is_heldout(rel_path: str) -> bool:
    """True for the ~10% of files reserved for prompts (never trained on)."""
    return zlib.crc32(rel_path.encode()) % _HELDOUT_EVERY == 0


@functools.lru_cache(maxsize=256)
def code_text(rel_path: str) -> str:
    """Source text of one standard-library file."""
    return (stdlib_dir() / rel_path).read_text(encoding="utf-8", errors="replace")


@functools.lru_cache(maxsize=256)
def prose_text(rel_path: str) -> str:
    """Prose of one file: a .txt/.rst as is; for a .py file its docstrings, blank-line separated."""
    if not rel_path.endswith(".py"):
        return code_text(rel_path)
    try:
        tree = ast.parse(code_text(rel_path))
    except (SyntaxError, ValueError):  # a few stdlib files are templates or Python-2 fixtures
        return ""
    docs = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                docs.append(inspect.cleandoc(doc))
    return "\n\n".join(docs)


def random_text(rng: random.Random, length: int) -> str:
    """``length`` random printable ASCII characters, uniformly drawn."""
    return "".join(rng.choices(_RANDOM_ALPHABET, k=length))


def _domain_files(domain: str, heldout: bool) -> list[str]:
    sources, texts = _library_files()
    files = list(sources) + (list(texts) if domain == "prose" else [])
    return [f for f in files if is_heldout(f) == heldout]


def _check_domain(domain: str) -> None:
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; known domains: {', '.join(DOMAINS)}")


def training_text(domain: str, max_chars: int, seed: int = 0) -> str:
    """Up to ``max_chars`` characters of training text for ``domain`` (held-out files excluded).

    Files are taken in sorted order; the ``random`` domain is generated from ``seed``.
    """
    _check_domain(domain)
    if domain == "random":
        return random_text(random.Random(f"train:{seed}"), max_chars)
    read = code_text if domain == "code" else prose_text
    parts, total = [], 0
    for rel in _domain_files(domain, heldout=False):
        text = read(rel)
        if not text:
            continue
        parts.append(text)
        total += len(text) + 1
        if total >= max_chars:
            break
    return "\n".join(parts)[:max_chars]


def prompt_text(domain: str, seed: int, length: int = DEFAULT_PROMPT_CHARS) -> str:
    """A prompt of exactly ``length`` characters for ``domain``, the same for the same ``seed``.

    Code and prose prompts are excerpts of held-out files starting at a line start; random prompts
    are fresh random characters. Pure Python (no torch).
    """
    _check_domain(domain)
    if length <= 0:
        raise ValueError(f"prompt length must be positive, got {length}")
    rng = random.Random(f"prompt:{domain}:{seed}")
    if domain == "random":
        return random_text(rng, length)
    files = _domain_files(domain, heldout=True)
    read = code_text if domain == "code" else prose_text
    for _ in range(100):  # a few files are too short or have no docstrings: draw again
        text = read(rng.choice(files))
        if len(text) < 2 * length:
            continue
        start = rng.randrange(0, len(text) - 2 * length)
        line_start = text.find("\n", start, start + length)
        start = start if line_start < 0 else line_start + 1
        return text[start : start + length]
    raise RuntimeError(f"no held-out {domain} text of {length} characters under {stdlib_dir()}")
