"""The web GUI end to end: a real cargobayd listening on TCP, real QEMU, the built React
app, driven by Playwright in Debian's Chromium (headless, ``--no-sandbox``; Playwright's
own browser downloads are not used).

One daemon per module (``gui``), started as ``cargobayd --listen-tcp 127.0.0.1:0`` in a
short CARGOBAY_HOME sharing the test image store; its address and token come from
``GET /v1/daemon/ui`` over the Unix socket.  Tests run in file order: the token checks, then one
sandbox's life through the GUI (create, see it running, run a command, read its logs,
stop, delete), then the app wizard (every step's validation, then a real docker-mode
instance: creating one only writes its record), then the compose editor on a file in
the test's directory.  Screenshots of each step go to ``$CARGOBAY_ARTIFACTS/web-ui`` or
the module's tmp directory; the path is printed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import require, require_binary

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
BOX = "webbox"
APP = "web-wizard"
BOOT = 120_000  # ms: a TCG boot takes 5-10 s, more on a busy machine


@dataclass
class Gui:
    home: Path
    tcp: str
    token: str
    url: str
    shots: Path
    unix: httpx.Client

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.unix.request(method, path, **kwargs)


def _cargobayd() -> list[str]:
    script = Path(sys.executable).parent / "cargobayd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cargobay.daemon.server"]


@pytest.fixture(scope="module")
def gui(
    default_image: tuple[Path, object], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gui]:
    from cargobay.daemon.webui.routes import DIST

    require(
        (DIST / "index.html").is_file(), f"the web UI built into {DIST} (scripts/setup.sh test)"
    )
    image_dir, _ = default_image
    home = Path(tempfile.mkdtemp(prefix="cbw-", dir="/tmp"))
    env = dict(os.environ, CARGOBAY_HOME=str(home), CARGOBAY_IMAGES=str(image_dir.parent))
    env.pop("CARGOBAY_LISTEN_TCP", None)
    proc = subprocess.Popen(
        [*_cargobayd(), "--listen-tcp", "127.0.0.1:0"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    socket_path = home / "run" / "cargobayd.sock"
    unix = httpx.Client(transport=httpx.HTTPTransport(uds=str(socket_path)), base_url="http://d",
                        timeout=180)  # fmt: skip
    artifacts = os.environ.get("CARGOBAY_ARTIFACTS")
    shots = (Path(artifacts) if artifacts else tmp_path_factory.mktemp("artifacts")) / "web-ui"
    shots.mkdir(parents=True, exist_ok=True)
    print(f"\nweb UI screenshots: {shots}")
    try:
        deadline = time.monotonic() + 30
        access: dict[str, Any] | None = None
        while access is None:
            assert proc.poll() is None, f"cargobayd exited with {proc.returncode}"
            assert time.monotonic() < deadline, "cargobayd did not answer within 30 s"
            with contextlib.suppress(httpx.TransportError):
                access = unix.get("/v1/daemon/ui").json()
            time.sleep(0.1)
        assert access["tcp"], access
        token = (home / "state" / "ui-token").read_text().strip()
        yield Gui(home, access["tcp"], token, access["url"], shots, unix)
    finally:
        with contextlib.suppress(httpx.HTTPError):
            for m in unix.get("/v1/machines").json():
                unix.delete(f"/v1/machines/{m['name']}", params={"force": "true"})
            unix.post("/v1/daemon/shutdown")
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        unix.close()
        log = home / "state" / "logs" / "cargobayd.log"
        if log.exists():
            print(f"daemon log ends with:\n{log.read_text(errors='replace')[-3000:]}")
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(gui: Gui) -> Iterator[Any]:
    require_binary("chromium", "Debian: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright (pip install -e '.[dev]')")
        raise
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def page(gui: Gui, browser: Any) -> Iterator[Any]:
    """One logged-in page: opening the address with the token sets the cookie."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    pg.on("dialog", lambda dialog: dialog.accept())
    pg.goto(gui.url)
    try:
        yield pg
    finally:
        context.close()


def shot(gui: Gui, page: Any, name: str) -> None:
    page.screenshot(path=str(gui.shots / f"{name}.png"), full_page=True)


# -- the token ------------------------------------------------------------------------------


def test_tcp_requests_need_the_token(gui: Gui) -> None:
    r = httpx.get(f"{gui.tcp}/v1/machines")
    assert r.status_code == 401, r.text
    error = r.json()["error"]
    assert error["code"] == "unauthorized"
    assert "Authorization: Bearer" in error["message"]
    assert str(gui.home / "state" / "ui-token") in error["message"]
    assert httpx.get(f"{gui.tcp}/ui/").status_code == 401
    bad = httpx.get(f"{gui.tcp}/v1/machines", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert "not this daemon's token" in bad.json()["error"]["message"]
    assert httpx.get(f"{gui.tcp}/ui/?token=nope").status_code == 401
    ok = httpx.get(f"{gui.tcp}/v1/machines", headers={"Authorization": f"Bearer {gui.token}"})
    assert ok.status_code == 200, ok.text
    assert gui.api("GET", "/v1/machines").status_code == 200  # the Unix socket: no token


def test_the_token_address_sets_a_cookie_and_drops_the_token(gui: Gui) -> None:
    r = httpx.get(gui.url)
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"cargobay_token={gui.token};")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    with httpx.Client(base_url=gui.tcp, cookies={"cargobay_token": gui.token}) as client:
        index = client.get("/ui/")
        assert index.status_code == 200
        assert '<div id="root">' in index.text
        assert client.get("/v1/info").json()["api_version"] == 1


def _cargobay(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "cargobay"
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "cargobay.cli"]
    environ = dict(os.environ, CARGOBAY_HOME=str(home))
    for var in ("CARGOBAY_LISTEN_TCP", "CARGOBAY_AUTOSTART"):
        environ.pop(var, None)
    return subprocess.run(
        [*argv, *args], env=environ, capture_output=True, text=True, timeout=60, check=False
    )


def test_cargobay_ui_prints_the_address_with_the_token(gui: Gui) -> None:
    r = _cargobay(gui.home, "ui")
    assert r.returncode == 0, r
    assert r.stdout.strip() == gui.url
    assert str(gui.home / "state" / "ui-token") in r.stderr


def test_cargobay_ui_without_a_tcp_listener_says_how_to_get_one() -> None:
    home = Path(tempfile.mkdtemp(prefix="cbu-", dir="/tmp"))
    try:
        r = _cargobay(home, "ui")  # starts a daemon for this home, without TCP
        assert r.returncode != 0, r
        assert "not listening on TCP" in r.stderr, r
        assert "CARGOBAY_LISTEN_TCP=127.0.0.1:8765" in r.stderr, r
        assert "Traceback" not in r.stderr, r
    finally:
        _cargobay(home, "daemon", "stop")
        shutil.rmtree(home, ignore_errors=True)


# -- a sandbox through the GUI --------------------------------------------------------------


def test_dashboard_creates_a_sandbox_that_runs(gui: Gui, page: Any) -> None:
    assert page.url.endswith("/ui/"), page.url  # the token left the address
    page.wait_for_selector("text=Sandboxes")
    page.wait_for_selector("text=No sandboxes yet.")
    shot(gui, page, "01-dashboard-empty")
    form = page.get_by_role("form", name="create sandbox")
    form.locator("input[name=name]").fill(BOX)
    form.locator("input[name=memory]").fill("384MB")
    form.get_by_role("button", name="Create sandbox").click()
    row = page.locator(f"tr[data-machine='{BOX}']")
    row.locator(".badge", has_text="running").wait_for(timeout=BOOT)
    shot(gui, page, "02-dashboard-running")
    assert gui.api("GET", f"/v1/machines/{BOX}").json()["state"]["kind"] == "running"


def test_machine_page_runs_a_command_and_shows_logs_and_charts(gui: Gui, page: Any) -> None:
    page.locator(f"tr[data-machine='{BOX}'] a", has_text=BOX).click()
    page.wait_for_selector("h2:has-text('webbox') .badge:has-text('running')")
    command = page.locator("input[name=command]")
    command.wait_for()
    page.wait_for_function("!document.querySelector('input[name=command]').disabled", timeout=BOOT)
    command.fill("echo hello-from-the-gui; uname -s; exit 3")
    page.get_by_role("button", name="Run").click()
    output = page.get_by_test_id("exec-output")
    output.locator("text=[exit 3]").wait_for(timeout=60_000)
    text = output.inner_text()
    assert "hello-from-the-gui" in text, text
    assert "Linux" in text, text
    # the console log, as the daemon serves it
    console = gui.api("GET", f"/v1/machines/{BOX}/logs", params={"tail": 50}).text
    last = next(line for line in reversed(console.splitlines()) if line.strip())
    # the same log as server-sent events (what the page's EventSource reads)
    events = gui.api(
        "GET",
        f"/v1/machines/{BOX}/logs",
        params={"tail": 50},
        headers={"Accept": "text/event-stream"},
    )
    assert events.headers["content-type"].startswith("text/event-stream")
    assert f"data: {last.rstrip()}\n\n" in events.text
    assert events.text.endswith("event: end\ndata: \n\n")
    logs = page.get_by_test_id("logs")
    page.wait_for_function(
        "([el, needle]) => el.textContent.includes(needle)",
        arg=[logs.element_handle(), last.strip()[-40:]],
    )
    # two metric readings make a CPU figure; memory is the QEMU process's RSS
    page.get_by_test_id("cpu-chart").locator("polyline").wait_for(timeout=30_000)
    memory = page.get_by_test_id("memory-chart").inner_text()
    assert "MiB" in memory, memory
    assert "–" not in memory.split("(")[0], memory
    metrics = gui.api("GET", f"/v1/machines/{BOX}/metrics").json()
    assert metrics["pid"], metrics
    assert metrics["rss_bytes"] > 16 * 1024 * 1024, metrics
    shot(gui, page, "03-machine-command-logs-charts")


def test_machine_page_stops_and_deletes(gui: Gui, page: Any) -> None:
    page.get_by_role("button", name="Stop", exact=True).click()
    page.wait_for_selector("h2 .badge:has-text('stopped')", timeout=60_000)
    shot(gui, page, "04-machine-stopped")
    assert gui.api("GET", f"/v1/machines/{BOX}").json()["state"]["kind"] == "stopped"
    page.get_by_role("button", name="Delete").click()  # the confirm dialog is accepted
    page.wait_for_selector("text=No sandboxes yet.", timeout=60_000)
    assert gui.api("GET", f"/v1/machines/{BOX}").status_code == 404
    shot(gui, page, "05-dashboard-after-delete")


# -- the app instance wizard ----------------------------------------------------------------


def _next(page: Any) -> None:
    page.get_by_role("button", name="Next").click()


def _error_for(page: Any, field: str) -> str:
    text: str = page.locator(f"label:has(input[name={field}]) .field-error").inner_text()
    return text


def test_wizard_checks_every_step_and_creates_an_instance(gui: Gui, page: Any) -> None:
    page.goto(f"{gui.tcp}/ui/#/apps/new")
    step1 = page.get_by_test_id("wizard-step-1")
    step1.wait_for()
    _next(page)
    assert "1-48 characters" in _error_for(page, "name")
    page.fill("input[name=name]", "Bad Name!")
    _next(page)
    assert "1-48 characters" in _error_for(page, "name")
    shot(gui, page, "10-wizard-basics-invalid")
    page.fill("input[name=name]", APP)
    page.fill("textarea[name=description]", "made by the GUI test")
    _next(page)

    page.get_by_test_id("wizard-step-2").wait_for()
    page.check("input[value=wsl2_docker]")
    _next(page)
    assert "WSL distribution" in _error_for(page, "wslDistro")
    shot(gui, page, "11-wizard-mode-invalid")
    page.check("input[value=docker]")
    _next(page)

    page.get_by_test_id("wizard-step-3").wait_for()
    page.fill("input[name=napcatVersion]", "not a tag!")
    _next(page)
    assert "image tag" in _error_for(page, "napcatVersion")
    shot(gui, page, "12-wizard-versions-invalid")
    page.fill("input[name=napcatVersion]", "v4.8.93")
    page.fill("input[name=version]", "0.10.0")
    _next(page)

    page.get_by_test_id("wizard-step-4").wait_for()
    page.fill("input[name=webuiPort]", "70000")
    page.fill("input[name=napcatPort]", "6099")
    _next(page)
    assert "1 to 65535" in _error_for(page, "webuiPort")
    page.fill("input[name=webuiPort]", "6099")
    page.fill("input[name=bindAddress]", "localhost")
    _next(page)
    assert "also used by" in _error_for(page, "napcatPort")
    assert "IP address" in _error_for(page, "bindAddress")
    shot(gui, page, "13-wizard-config-invalid")
    page.fill("input[name=webuiPort]", "18001")
    page.fill("input[name=bindAddress]", "127.0.0.1")
    _next(page)

    summary = page.get_by_test_id("wizard-summary")
    summary.wait_for()
    assert f'"name": "{APP}"' in summary.inner_text()
    assert "mlikiowa/napcat-docker:v4.8.93" in summary.inner_text()
    shot(gui, page, "14-wizard-confirm")
    page.get_by_role("button", name="Create instance").click()
    page.wait_for_selector(f"h2:has-text('{APP}') .badge:has-text('created')")
    shot(gui, page, "15-app-instance-page")
    instance = gui.api("GET", f"/v1/apps/{APP}").json()
    assert instance["deploy_mode"] == "docker"
    assert instance["version"] == "0.10.0"
    assert instance["stack"]["napcat_image"] == "mlikiowa/napcat-docker:v4.8.93"
    assert instance["stack"]["webui_port"] == 18001
    assert instance["description"] == "made by the GUI test"

    # the daemon's own refusal is shown too: the same name again
    page.goto(f"{gui.tcp}/ui/#/apps/new")
    page.fill("input[name=name]", APP)
    for _ in range(4):
        _next(page)
    page.get_by_role("button", name="Create instance").click()
    page.get_by_role("alert").filter(has_text="already exists").wait_for()
    shot(gui, page, "16-wizard-daemon-refuses")
    # (deleting an instance asks the Docker engine about its containers: the home's
    # removal at the end takes the record away instead)


# -- the compose editor ---------------------------------------------------------------------

COMPOSE = """services:
  web:
    image: busybox:1.36
    command: ["sleep", "600"]
"""


def test_compose_editor_validates_and_saves(gui: Gui, page: Any, tmp_path: Path) -> None:
    stack = tmp_path / "stack"
    stack.mkdir()
    file = stack / "compose.yaml"
    file.write_text(COMPOSE)
    page.goto(f"{gui.tcp}/ui/#/compose?path={file}")
    editor = page.locator("textarea[name=compose]")
    page.wait_for_function("el => el.value.includes('busybox')", arg=editor.element_handle())
    shot(gui, page, "20-compose-open")
    broken = COMPOSE.replace("    command:", "    bogus_key: 1\n    command:")
    editor.fill(broken)
    page.get_by_role("button", name="Validate").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "bogus_key" in alert.inner_text(), alert.inner_text()
    page.get_by_role("button", name="Save").click()
    alert.filter(has_text="bogus_key").wait_for()
    assert file.read_text() == COMPOSE  # a file that does not validate is never written
    shot(gui, page, "21-compose-invalid")
    fixed = COMPOSE.replace("busybox:1.36", "busybox:1.37")
    editor.fill(fixed)
    page.get_by_role("button", name="Validate").click()
    page.locator(".ok", has_text="Valid: services web").wait_for()
    page.get_by_role("button", name="Save").click()
    page.locator(".ok", has_text="Saved: services web").wait_for()
    assert file.read_text() == fixed
    assert sorted(p.name for p in stack.iterdir()) == ["compose.yaml"]  # no temp file left
    shot(gui, page, "22-compose-saved")


def test_settings_page_shows_what_the_daemon_knows(gui: Gui, page: Any) -> None:
    page.goto(f"{gui.tcp}/ui/#/settings")
    page.wait_for_selector("text=Docker connection")
    page.wait_for_selector("text=The daemon's own defaults")
    settings = gui.api("GET", "/v1/daemon/settings").json()
    assert settings["containers_file"] in page.inner_text("body")
    shot(gui, page, "30-settings")
