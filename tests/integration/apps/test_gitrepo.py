"""cargobay.apps.gitrepo against a repository made here and served over HTTP on loopback
by dulwich's own smart-HTTP WSGI app under wsgiref."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from dulwich import porcelain
from dulwich.repo import Repo
from dulwich.server import DictBackend
from dulwich.web import make_wsgi_chain

from cargobay.apps.gitrepo import branches, clone, current_commit, pull, switch_branch
from cargobay.errors import GitError, InvalidInput


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Upstream:
    path: Path
    url: str

    def commit(self, name: str, text: str, message: str) -> str:
        (self.path / name).write_text(text)
        porcelain.add(str(self.path), [str(self.path / name)])
        sha = porcelain.commit(
            str(self.path),
            message.encode(),
            author=b"Test <t@example.org>",
            committer=b"Test <t@example.org>",
        )
        return sha.decode()


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Upstream]:
    path = tmp_path / "upstream"
    path.mkdir()
    repo = porcelain.init(str(path))
    repo.close()
    up = Upstream(path=path, url="")
    up.commit("README.md", "MaiBot stand-in\n", "first")
    up.commit("bot.py", "print('hi')\n", "second")
    with Repo(str(path)) as r:
        r.refs[b"refs/heads/dev"] = r.refs[b"refs/heads/master"]
    porcelain.checkout(str(path), "dev")
    up.commit("dev.txt", "dev only\n", "on dev")
    porcelain.checkout(str(path), "master")
    served = Repo(str(path))
    backend = DictBackend({"/": served})
    server = make_server("127.0.0.1", 0, make_wsgi_chain(backend), WSGIServer, _Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    up.url = f"http://127.0.0.1:{server.server_port}/"
    try:
        yield up
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        served.close()


async def test_shallow_clone_with_progress_then_pull(upstream: Upstream, tmp_path: Path) -> None:
    lines: list[str] = []
    target = tmp_path / "instances" / "maibot"
    info = await clone(upstream.url, target, on_progress=lines.append)
    assert info.subject == "second"
    assert info.branch == "master"
    assert (target / "bot.py").read_text() == "print('hi')\n"
    assert (target / ".git" / "shallow").exists()
    assert lines  # the remote's "Counting objects" / "Receiving" lines arrived
    assert sorted(p.name for p in target.parent.iterdir()) == ["maibot"]

    sha = upstream.commit("bot.py", "print('v2')\n", "third")
    updated = await pull(target)
    assert updated.sha == sha
    assert (target / "bot.py").read_text() == "print('v2')\n"
    assert current_commit(target) == updated


async def test_switch_to_origin_branch_and_back(upstream: Upstream, tmp_path: Path) -> None:
    target = tmp_path / "maibot"
    await clone(upstream.url, target)
    assert "dev" in branches(target)
    info = await switch_branch(target, "dev")
    assert info.branch == "dev"
    assert info.subject == "on dev"
    assert (target / "dev.txt").exists()
    back = await switch_branch(target, "master")
    assert back.branch == "master"
    assert not (target / "dev.txt").exists()
    with pytest.raises(GitError, match="no branch 'nope'"):
        await switch_branch(target, "nope")


async def test_clone_branch_directly(upstream: Upstream, tmp_path: Path) -> None:
    info = await clone(upstream.url, tmp_path / "d", branch="dev")
    assert info.subject == "on dev"


async def test_bad_url_is_a_clear_error_and_leaves_nothing(
    upstream: Upstream, tmp_path: Path
) -> None:
    parent = tmp_path / "instances"
    with pytest.raises(GitError, match=r"cloning http://127\.0\.0\.1:1/nothing failed"):
        await clone("http://127.0.0.1:1/nothing", parent / "a")
    with pytest.raises(GitError, match=r"cloning .*missing\.git failed"):
        await clone(upstream.url + "missing.git", parent / "b")
    assert list(parent.iterdir()) == []
    with pytest.raises(InvalidInput, match="not a repository URL"):
        await clone("/etc; rm -rf", parent / "c")
    with pytest.raises(InvalidInput, match="not a valid branch"):
        await clone(upstream.url, parent / "c", branch="../x")


async def test_existing_target_and_not_a_repo(upstream: Upstream, tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(GitError, match="not empty"):
        await clone(upstream.url, target)
    assert (target / "keep.txt").read_text() == "mine"
    with pytest.raises(GitError, match="not a git repository"):
        current_commit(target)


async def test_pull_refuses_diverged_and_dirty(upstream: Upstream, tmp_path: Path) -> None:
    target = tmp_path / "maibot"
    await clone(upstream.url, target)
    (target / "bot.py").write_text("print('local edit')\n")
    upstream.commit("new.txt", "x\n", "upstream moves")
    with pytest.raises(GitError, match="local changes"):
        await pull(target)
    assert (target / "bot.py").read_text() == "print('local edit')\n"
    porcelain.add(str(target), [str(target / "bot.py")])
    porcelain.commit(str(target), b"local commit", author=b"L <l@x>", committer=b"L <l@x>")
    before = current_commit(target)
    with pytest.raises(GitError, match="cannot be fast-forwarded"):
        await pull(target)
    assert current_commit(target) == before
