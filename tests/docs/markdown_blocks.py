"""Find and run the ```python blocks of Markdown files (shared by the docs tests).

A block fenced as ```python runs; one fenced as ```python notest does not. Blocks of
one file run in order in one namespace: a fresh module registered in sys.modules
under a name of the caller's choice (so classes defined in a block can be pickled,
as they could be in a user's module). Line numbers in tracebacks are the lines of
the Markdown file itself.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import sys
import traceback
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*?)[ \t]*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block."""

    path: Path
    number: int  # 1-based, counting every fenced block of the file
    line: int  # 1-based line of the first line of code (after the fence)
    info: str  # the info string: "python", "python notest", "bash", ...
    code: str

    @property
    def language(self) -> str:
        return self.info.split()[0].lower() if self.info else ""

    @property
    def runs(self) -> bool:
        """A ```python block without the notest marker."""
        words = self.info.lower().split()
        return bool(words) and words[0] == "python" and "notest" not in words[1:]

    @property
    def is_python(self) -> bool:
        return self.language == "python"

    def compiled(self) -> types.CodeType:
        # Pad with blank lines so that line numbers are the Markdown file's own.
        return compile("\n" * (self.line - 1) + self.code, str(self.path), "exec")


def blocks(path: Path) -> list[Block]:
    """Every fenced code block of ``path``, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m["indent"], m["fence"], m["info"]
        close = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            text = lines[j]
            body.append(text[len(indent) :] if text.startswith(indent) else text.lstrip())
            j += 1
        if j == len(lines):
            raise AssertionError(f"{path}:{i + 1}: code fence {fence!r} is never closed")
        found.append(Block(path, len(found) + 1, i + 2, info, "\n".join(body) + "\n"))
        i = j + 1
    return found


@contextmanager
def sandbox(tmp_path: Path, module_name: str) -> Iterator[dict[str, object]]:
    """A fresh module namespace, run in ``tmp_path`` with CACHEKIT_* and REDIS_URL
    removed; the environment, the working directory and logger levels are restored
    afterwards, and everything the blocks defined is released."""
    saved_env = dict(os.environ)
    saved_cwd = Path.cwd()
    manager = logging.Logger.manager
    saved_levels = {
        name: lg.level for name, lg in manager.loggerDict.items() if isinstance(lg, logging.Logger)
    }
    root = logging.getLogger()
    saved_root = (root.level, list(root.handlers))
    module = types.ModuleType(module_name)
    sys.modules[module_name] = module
    os.environ.clear()
    os.environ.update(_without_cachekit(saved_env))
    os.chdir(tmp_path)
    try:
        yield module.__dict__
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        for name, lg in list(manager.loggerDict.items()):
            if isinstance(lg, logging.Logger):
                lg.setLevel(saved_levels.get(name, logging.NOTSET))
        root.setLevel(saved_root[0])
        root.handlers[:] = saved_root[1]
        sys.modules.pop(module_name, None)
        module.__dict__.clear()
        gc.collect()


def _without_cachekit(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not (k.startswith("CACHEKIT_") or k == "REDIS_URL")}


def run_block(block: Block, namespace: dict[str, object], root: Path | None = None) -> None:
    """Exec one block; on any exception, fail with the file, block number and line."""
    try:
        exec(block.compiled(), namespace)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit and friends are failures of the block too
        error = exc
    else:
        return
    fail_in_block(block, error, root)  # outside the except: no chained context in the report


def fail_in_block(block: Block, exc: BaseException, root: Path | None = None) -> None:
    where = block.path.relative_to(root) if root else block.path
    frames = traceback.extract_tb(exc.__traceback__)
    in_doc = [f for f in frames if f.filename == str(block.path)]
    line = in_doc[-1].lineno if in_doc else block.line
    detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    pytest.fail(
        f"{where}: block {block.number} (code starts at line {block.line}) failed at line "
        f"{line}: {type(exc).__name__}: {exc}\n\n{detail}",
        pytrace=False,
    )


def run_file(
    path: Path,
    tmp_path: Path,
    module_name: str,
    root: Path | None = None,
    special: Callable[[Block, dict[str, object]], bool] | None = None,
) -> int:
    """Run every runnable block of ``path`` in order; return how many ran.

    ``special(block, namespace)`` may take over a block (and return True).
    """
    count = 0
    with sandbox(tmp_path, module_name) as namespace:
        for block in blocks(path):
            if not block.runs:
                continue
            count += 1
            if special is not None and special(block, namespace):
                continue
            run_block(block, namespace, root)
    return count
