"""Git operations on an app's repository with dulwich (no git binary needed).

The local deploy mode clones MaiBot and its adapter, switches branches and pulls updates.

API (asyncio; the dulwich work runs in a worker thread)::

    info = await clone(url, target, branch="main", depth=1, on_progress=print)  # -> CommitInfo
    info = await switch_branch(target, "dev")        # a local or origin branch
    info = await pull(target)                        # fast-forward only
    info = current_commit(target)                    # sha, branch, subject, author, time
    names = branches(target)                         # local and origin branch names

``on_progress`` receives the remote's progress lines ("Receiving objects:  50% (3/6)") on the
event loop.  A clone goes to a temp dir next to ``target`` and is renamed at the end, so a
bad URL or a broken transfer leaves nothing behind; every failure is a
:class:`~cargobay.errors.GitError` that names the repository.
"""

from __future__ import annotations

import asyncio
import io
import re
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from dulwich import porcelain
from dulwich.errors import NotGitRepository
from dulwich.objects import Commit
from dulwich.refs import Ref
from dulwich.repo import Repo
from pydantic import BaseModel

from cargobay.errors import GitError, InvalidInput

ProgressCallback = Callable[[str], None]
_URL = re.compile(r"^(https?|git|ssh|file)://\S+$")
_BRANCH = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/-]{1,200}(?<![./])$")


class CommitInfo(BaseModel):
    sha: str
    branch: str | None
    subject: str
    author: str
    time: datetime


class _ProgressStream(io.RawIOBase):
    """A binary stream for dulwich's errstream that hands each progress line to a callback
    on the event loop (lines end with \\r for in-place updates or \\n)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: ProgressCallback | None):
        super().__init__()
        self._loop = loop
        self._callback = callback
        self._buffer = b""

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._buffer += bytes(data)
        *lines, self._buffer = re.split(rb"[\r\n]", self._buffer)
        for line in lines:
            text = line.decode("utf-8", "replace").strip()
            if text and self._callback is not None:
                self._loop.call_soon_threadsafe(self._callback, text)
        return len(data)


def _check_url(url: str) -> None:
    if not _URL.match(url):
        raise InvalidInput(f"not a repository URL: {url!r} (use http(s)://, git://, ssh://)")


def _check_branch(branch: str) -> None:
    if not _BRANCH.match(branch):
        raise InvalidInput(f"not a valid branch name: {branch!r}")


def _open(path: Path) -> Repo:
    try:
        return Repo(str(path))
    except NotGitRepository as err:
        raise GitError(f"{path} is not a git repository") from err


def _info(repo: Repo) -> CommitInfo:
    try:
        head = repo.head()
    except KeyError as err:
        raise GitError(f"{repo.path}: the repository has no commits") from err
    commit = repo[head]
    assert isinstance(commit, Commit)
    try:
        branch: str | None = porcelain.active_branch(repo).decode()
    except (KeyError, IndexError, ValueError):
        branch = None  # detached HEAD
    return CommitInfo(
        sha=head.decode(),
        branch=branch,
        subject=commit.message.decode("utf-8", "replace").split("\n", 1)[0],
        author=commit.author.decode("utf-8", "replace"),
        time=datetime.fromtimestamp(commit.commit_time, UTC),
    )


def current_commit(path: Path) -> CommitInfo:
    """The commit checked out at ``path`` and its branch (None when detached)."""
    with _open(path) as repo:
        return _info(repo)


def branches(path: Path) -> list[str]:
    """Local branches and the origin's (without the ``origin/`` prefix), sorted, unique."""
    with _open(path) as repo:
        names = {r.decode() for r in repo.refs.keys(Ref(b"refs/heads/"))}
        remote = repo.refs.keys(Ref(b"refs/remotes/origin/"))
        names |= {r.decode() for r in remote if r != b"HEAD"}
    return sorted(names)


async def clone(
    url: str,
    target: Path,
    *,
    branch: str | None = None,
    depth: int | None = 1,
    on_progress: ProgressCallback | None = None,
) -> CommitInfo:
    """Clone ``url`` into the new directory ``target`` (shallow by default)."""
    _check_url(url)
    if branch is not None:
        _check_branch(branch)
    if depth is not None and depth < 1:
        raise InvalidInput("depth must be at least 1 (or None for the full history)")
    loop = asyncio.get_running_loop()
    stream = _ProgressStream(loop, on_progress)

    def work() -> CommitInfo:
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise GitError(f"{target} already exists and is not empty")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.clone-", dir=target.parent))
        try:
            try:
                repo = porcelain.clone(
                    url, str(staging), depth=depth, branch=branch, errstream=stream
                )
            except Exception as err:  # dulwich raises many types: HTTP, protocol, OS errors
                raise GitError(f"cloning {url} failed: {type(err).__name__}: {err}") from err
            with repo:
                info = _info(repo)
            if target.exists():
                target.rmdir()  # empty (checked above)
            staging.rename(target)
            return info
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    return await asyncio.to_thread(work)


async def switch_branch(
    path: Path, branch: str, *, on_progress: ProgressCallback | None = None
) -> CommitInfo:
    """Check out ``branch``: a local one, else origin's (fetched when the shallow clone did
    not bring it).  Local changes that would be lost make it fail with nothing changed."""
    _check_branch(branch)
    loop = asyncio.get_running_loop()
    stream = _ProgressStream(loop, on_progress)

    def work() -> CommitInfo:
        with _open(path) as repo:
            local = Ref(b"refs/heads/" + branch.encode())
            remote = Ref(b"refs/remotes/origin/" + branch.encode())
            try:
                if local not in repo.refs:
                    if remote not in repo.refs:
                        porcelain.fetch(
                            repo, "origin", errstream=stream, depth=1, outstream=io.StringIO()
                        )
                    if remote not in repo.refs:
                        raise GitError(f"{path}: no branch {branch!r} here or on origin")
                    repo.refs[local] = repo.refs[remote]
                    config = repo.get_config()
                    config.set((b"branch", branch.encode()), b"remote", b"origin")
                    config.set((b"branch", branch.encode()), b"merge", local)
                    config.write_to_path()
                porcelain.checkout(repo, branch)
            except GitError:
                raise
            except Exception as err:  # dulwich: conflicts, transport errors, missing objects
                raise GitError(f"{path}: switching to {branch!r} failed: {err}") from err
            return _info(repo)

    return await asyncio.to_thread(work)


DEEPEN = 200
"""How far back a pull into a shallow clone fetches to find the current commit."""


def _dirty(repo: Repo) -> bool:
    status = porcelain.status(repo, untracked_files="no")
    return bool(status.unstaged) or any(status.staged.values())


async def pull(path: Path, *, on_progress: ProgressCallback | None = None) -> CommitInfo:
    """Fetch origin's copy of the current branch and fast-forward to it.

    A branch that diverged, local changes to tracked files, or (in a shallow clone) a
    current commit more than ``DEEPEN`` commits behind are errors; nothing changes then."""
    loop = asyncio.get_running_loop()
    stream = _ProgressStream(loop, on_progress)

    def work() -> CommitInfo:
        with _open(path) as repo:
            try:
                branch = porcelain.active_branch(repo).decode()
            except (KeyError, IndexError, ValueError) as err:
                raise GitError(f"{path}: HEAD is detached; switch to a branch first") from err
            head = repo.head()
            remote = Ref(f"refs/remotes/origin/{branch}".encode())
            try:
                # dulwich's server cannot answer a shallow client's fetch without a depth,
                # so a shallow clone deepens by a bounded amount (git would walk to the
                # old boundary by itself)
                depth = DEEPEN if repo.get_shallow() else None
                porcelain.fetch(
                    repo, "origin", errstream=stream, outstream=io.StringIO(), depth=depth
                )
            except Exception as err:  # dulwich: HTTP, protocol and OS errors
                raise GitError(
                    f"{path}: fetching origin failed: {type(err).__name__}: {err}"
                ) from err
            if remote not in repo.refs:
                raise GitError(f"{path}: origin has no branch {branch!r} any more")
            new = repo.refs[remote]
            if new == head:
                return _info(repo)
            ancestors = {entry.commit.id for entry in repo.get_walker(include=[new])}
            if head not in ancestors:
                raise GitError(
                    f"{path}: {branch} cannot be fast-forwarded to origin/{branch} "
                    "(diverged, or too far behind a shallow clone); clone it again"
                )
            if _dirty(repo):
                raise GitError(f"{path}: local changes to tracked files; commit or drop them")
            repo.refs[Ref(f"refs/heads/{branch}".encode())] = new
            porcelain.reset(repo, "hard", new)
            return _info(repo)

    return await asyncio.to_thread(work)
