"""The on-disk compile cache every native backend shares (gcc's libraries, NVRTC's modules).

Where it lives (`cache_dir`), how it is kept safe (`check_cache_dir`: ours and private, since a
loaded library runs as us), how entries are named, replaced and removed atomically (`entry_dir`,
`discard`), how concurrent processes build a key once (`key_lock`, an flock released by the
kernel if its holder dies), and where sources that did not compile are kept (`save_failed`).
What a key hashes and how an entry is built belong to each compiler (backends/c/build.py,
backends/cuda/nvrtc.py).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import importlib.resources
import os
import shlex
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from ..core.errors import CompileError


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The cache directory: ``$GRAPHC_CACHE_DIR``, else ``$XDG_CACHE_HOME/graphc``, else ``~/.cache/graphc``.

    >>> str(cache_dir({"GRAPHC_CACHE_DIR": "/tmp/gc", "XDG_CACHE_HOME": "/xdg"}))
    '/tmp/gc'
    >>> str(cache_dir({"XDG_CACHE_HOME": "/xdg"}))
    '/xdg/graphc'
    """
    env = os.environ if environ is None else environ
    if env.get("GRAPHC_CACHE_DIR"):
        return Path(env["GRAPHC_CACHE_DIR"]).expanduser().absolute()
    xdg = env.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec says relative values are to be ignored
        return Path(xdg) / "graphc"
    return Path.home() / ".cache" / "graphc"


def save_failed(root: Path, key: str, source: str, log: str) -> str:
    """Keep a source that did not compile (and gcc's output) under <cache>/failed/; return its path."""
    failed_dir = root / "failed"
    failed_dir.mkdir(mode=0o700, exist_ok=True)
    for suffix, text in ((".log", log), (".c", source)):
        fd, tmp_name = tempfile.mkstemp(dir=failed_dir, prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp_name, failed_dir / f"{key}{suffix}")  # atomic: a racing failure writes the same text
    return str(failed_dir / f"{key}.c")


def check_cache_dir(root: Path, *, create: bool) -> None:
    """Create `root` (mode 0700) if asked, then refuse it unless it is ours and private.

    Loading a library runs its code in this process, so a cache that someone else can write to
    is a way to run their code as us.
    """
    if create:
        try:
            os.makedirs(root, mode=0o700, exist_ok=True)
        except OSError as e:
            raise CompileError(f"cannot create the graphc compile cache {root}: {e}; "
                               "set GRAPHC_CACHE_DIR to a writable directory") from None
    st = os.stat(root)
    if not stat.S_ISDIR(st.st_mode):
        raise CompileError(f"the graphc compile cache {root} is not a directory; "
                           "remove it or set GRAPHC_CACHE_DIR to a directory")
    if st.st_uid != os.getuid():
        raise PermissionError(f"refusing to use the graphc compile cache {root}: it is owned by uid {st.st_uid}, "
                              f"not by you (uid {os.getuid()}). Set GRAPHC_CACHE_DIR to a directory of your own.")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise PermissionError(f"refusing to use the graphc compile cache {root}: it is writable by "
                              f"{'others' if st.st_mode & stat.S_IWOTH else 'its group'} "
                              f"(mode {stat.S_IMODE(st.st_mode):o}), so anyone could plant code that graphc "
                              f"would load. Fix: chmod 700 {shlex.quote(str(root))}, "
                              f"or set GRAPHC_CACHE_DIR to a private directory.")


def entry_dir(root: Path, key: str) -> Path:
    return root / key[:2] / key


def entries(root: Path) -> Iterator[Path]:
    """The entry directories under `root` (complete ones: tmp-* builds are not entries)."""
    for shard in root.glob("[0-9a-f][0-9a-f]"):
        try:
            children = list(shard.iterdir())
        except FileNotFoundError:  # removed by a concurrent cache_clear
            continue
        for entry in children:
            if is_key(entry.name) and entry.name.startswith(shard.name) and entry.is_dir():
                yield entry


def discard(root: Path, entry: Path) -> None:
    """Remove an entry: first rename it out of the way (atomic, so readers see it or nothing)."""
    trash = Path(tempfile.mkdtemp(prefix="trash-", dir=root))
    try:
        os.rename(entry, trash / "entry")
    except FileNotFoundError:  # already gone
        pass
    shutil.rmtree(trash, ignore_errors=True)


@contextmanager
def key_lock(root: Path, key: str, *, blocking: bool = True) -> Iterator[bool]:
    """Hold the exclusive flock of `key`'s lock file (created, with its shard, as needed).

    Yields False at once if `blocking` is off and another process holds it. The kernel releases
    an flock when its holder dies, so a killed build never leaves the key locked.
    """
    fd = _acquire(root / key[:2], root / key[:2] / f"{key}.lock", blocking)
    try:
        yield fd is not None
    finally:
        if fd is not None:
            os.close(fd)  # closing releases the lock


def _acquire(shard: Path, path: Path, blocking: bool) -> int | None:
    """The fd of `path`, flock'ed; None if not `blocking` and it is taken."""
    while True:
        shard.mkdir(mode=0o700, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:  # a cache_clear removed the empty shard between mkdir and open
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        mine = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
            return fd
        os.close(fd)  # cache_clear unlinked the file while we waited on it: lock the one there now


def is_key(name: str) -> bool:
    """
    >>> is_key("ab" * 32), is_key("tmp")
    (True, False)
    """
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


def unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@functools.cache
def kernels_dir() -> Path:
    return Path(str(importlib.resources.files("graphc.kernels")))
