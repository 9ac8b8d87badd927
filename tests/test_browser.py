"""The lessons as a reader sees them: JupyterLab in headless Chromium shows titles, markdown, figures and diagrams.

One JupyterLab server (this environment's, on 127.0.0.1, a random port and token,
settings in a temporary folder) and one headless Chromium (Debian's
``/usr/bin/chromium`` driven by Playwright; never a downloaded browser) serve
the whole file. Notebooks are opened, never run: the server starts no kernel.
Screenshots go to ``build/screenshots/``.

Without ``/usr/bin/chromium`` the tests skip, except under ``CI`` where they
fail: run ``.ci/install-browser`` first.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import nbformat
import pytest

from conftest import ROOT

from helpers.lessons import NOTEBOOKS

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "build" / "screenshots"
PROBE_DIR = ROOT / "build" / "browser-probe"
SERVER_START_S = 60  # JupyterLab answering /api/status
RENDER_S = 60  # one notebook: page load, every cell, every figure and diagram
MAX_SHOT_HEIGHT = 16000  # px; Chromium's largest capture is about 16k

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",  # containers often have a small /dev/shm
    # Nothing but the local server resolves: a lesson that needs the network fails instead of hanging.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]

# JupyterLab settings for a quiet, offline, complete view: every cell attached to the page (no windowing, so all
# figures are in the DOM and in the screenshot; no blank page after the last cell), no autosave (opening a lesson
# never rewrites it), no news, update checks or extension manager (they would try the network).
OVERRIDES = {
    "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none", "scrollPastEnd": False},
    "@jupyterlab/docmanager-extension:plugin": {"autosave": False},
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/extensionmanager-extension:plugin": {"enabled": False},
}

MERMAID_BLOCK = re.compile(r"^[ \t]*(?:```|~~~)[ \t]*mermaid\b", re.MULTILINE)
ATTACHED_IMAGE = re.compile(r"!\[[^\]]*\]\(attachment:[^)]+\)")  # the diagrams' static pictures (Colab shows these)

# Everything a person would look at, measured in the page in one go. ``root`` is the notebook panel.
MEASURE_JS = """
(root) => {
  const all = (sel, el = root) => [...el.querySelectorAll(sel)];
  const text = (el) => el.textContent.replace(/\\u00b6/g, '').replace(/\\s+/g, ' ').trim();
  const loaded = (img) => img.complete && img.naturalWidth > 0;
  const mermaid = all('.jp-MarkdownCell .jp-RenderedMermaid');
  const mermaidSvgs = mermaid.filter((d) => !d.classList.contains('jp-mod-warning'))
    .flatMap((d) => all('img', d))
    .filter((img) => img.src.startsWith('data:image/svg+xml') && decodeURIComponent(img.src).includes('<svg')
                     && loaded(img));
  const markdown = all('.jp-MarkdownCell');
  return {
    cells: all('.jp-Notebook .jp-Cell').length,
    markdownCells: markdown.length,
    renderedMarkdownCells: markdown.filter((c) => c.classList.contains('jp-mod-rendered')
                                               && c.querySelector('.jp-RenderedMarkdown')?.childElementCount)
                           .length,
    h1: all('.jp-MarkdownCell .jp-RenderedMarkdown h1').map(text),
    h2: all('.jp-MarkdownCell .jp-RenderedMarkdown h2').map(text),
    outputImages: all('.jp-OutputArea-output img').length,
    loadedOutputImages: all('.jp-OutputArea-output :is(.jp-RenderedImage, .jp-RenderedSVG) img, '
                            + '.jp-OutputArea-output.jp-RenderedImage img, .jp-OutputArea-output.jp-RenderedSVG img')
                        .filter(loaded).length,
    mermaidBlocks: mermaid.length,
    mermaidSvgs: mermaidSvgs.length,
    mermaidErrors: mermaid.filter((d) => d.classList.contains('jp-mod-warning')).map(text),
    attachmentImages: all('.jp-MarkdownCell .jp-RenderedMarkdown img')
      .filter((img) => !img.closest('.jp-RenderedMermaid') && img.src.startsWith('data:image/png') && loaded(img))
      .length,
    tracebacks: all('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"]').length,
    widgetErrors: all('.jp-OutputArea-output').map(text).filter((t) => t.includes('Error displaying widget')),
    dialogs: [...document.querySelectorAll('.jp-Dialog')].map(text),
    errorToasts: [...document.querySelectorAll('.jp-Notification-Toast-error, .Toastify__toast--error')].map(text),
    scrollHeight: (root.querySelector('.jp-WindowedPanel-outer') || root).scrollHeight,
  };
}
"""


# ---------------------------------------------------------------------------------------------- what a lesson holds

def _plain(markdown: str) -> str:
    """A heading's text as the page shows it: no emphasis, code or link markup."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", markdown)
    return re.sub(r"\s+", " ", re.sub(r"[*_`]", "", text)).strip()


def expected(path: Path) -> dict:
    """Title, first ``##`` heading, stored figures and mermaid blocks of one notebook, read with nbformat."""
    nb = nbformat.read(path, as_version=4)
    markdown = [c for c in nb.cells if c.cell_type == "markdown"]
    assert markdown, f"{path.name} has no markdown cell"
    headings = [line for c in markdown for line in c.source.splitlines()]
    title = next((h[2:] for h in markdown[0].source.splitlines() if h.startswith("# ")), None)
    assert title, f"{path.name}: the first markdown cell has no '# ' title"
    second = next((h[3:] for h in headings if h.startswith("## ")), None)
    assert second, f"{path.name} has no '## ' heading"
    images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                 if any(k.startswith("image/") for k in o.get("data", {})))
    return {"cells": len(nb.cells), "markdown": len(markdown), "title": _plain(title), "h2": _plain(second),
            "images": images, "mermaid": sum(len(MERMAID_BLOCK.findall(c.source)) for c in markdown),
            "attachments": sum(len(ATTACHED_IMAGE.findall(c.source)) for c in markdown)}


# --------------------------------------------------------------------------------------------------------- fixtures

def _require_browser():
    """Chromium and Playwright, or a skip (a failure in CI) that says what to install."""
    missing = None
    if not CHROMIUM.exists():
        missing = f"{CHROMIUM} not found: run .ci/install-browser (installs Debian's chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = missing or "the playwright package is missing: pip install -e '.[test]'"
    if missing and os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(missing)
    if missing:
        pytest.skip(missing)
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base: str, token: str, path: str, method: str = "GET"):
    request = urllib.request.Request(f"{base}{path}", method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        body = response.read()
    return json.loads(body) if body else None


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@pytest.fixture(scope="module")
def sync_playwright():
    return _require_browser()


@pytest.fixture(scope="module")
def lab(sync_playwright, tmp_path_factory):
    """A JupyterLab server on the repository: ``{"base", "token", "log"}``; stopped whatever happens."""
    home = tmp_path_factory.mktemp("jupyterlab")
    for folder in ("config", "data", "runtime", "app-settings", "user-settings", "workspaces"):
        (home / folder).mkdir()
    (home / "app-settings" / "overrides.json").write_text(json.dumps(OVERRIDES, indent=1))
    token, port = secrets.token_hex(24), _free_port()
    env = {**os.environ, "JUPYTER_TOKEN": token, "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_DATA_DIR": str(home / "data"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTER_PLATFORM_DIRS": "1", "IPYTHONDIR": str(home / "ipython")}
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={ROOT}", "--ServerApp.terminals_enabled=False",
        f"--LabApp.app_settings_dir={home / 'app-settings'}",
        f"--LabApp.user_settings_dir={home / 'user-settings'}",
        f"--LabApp.workspaces_dir={home / 'workspaces'}",
        "--LabApp.notebook_starts_kernel=False",  # open the lessons, never run them
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # CI containers run as root
    log = home / "jupyterlab.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"JupyterLab exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                _api(base, token, "/api/status")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer in {SERVER_START_S} s:\n{log.read_text()[-3000:]}")
                time.sleep(0.25)
        yield {"base": base, "token": token, "log": log}
        kernels = _api(base, token, "/api/kernels")
        assert kernels == [], f"opening the lessons started kernels: {kernels}"
    finally:
        try:  # no kernel should run; shut down any that does before the server goes
            for kernel in _api(base, token, "/api/kernels") or []:
                _api(base, token, f"/api/kernels/{kernel['id']}", method="DELETE")
        except (OSError, ValueError):  # the server is gone already: nothing to shut down
            pass
        _stop(process)


@pytest.fixture(scope="module")
def browser(sync_playwright, tmp_path_factory):
    """Headless Chromium with a fresh profile: one context for the whole file."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900}, timeout=60_000)
        try:
            yield context
        finally:
            context.close()


# ---------------------------------------------------------------------------------------------------- the reading

def view(browser, lab, relpath: str, want: dict, shot: Path) -> dict:
    """Open ``relpath`` in JupyterLab, wait until every cell, figure and diagram is drawn, screenshot, measure."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page = browser.new_page()
    outside, crashes = [], []
    page.on("request", lambda r: urlsplit(r.url).hostname not in (None, "127.0.0.1") and outside.append(r.url))
    # Script errors are printed, not failed on: with no kernel, the ipywidgets manager throws
    # "Cannot read properties of null (reading 'kernel')", which a reader never sees.
    page.on("pageerror", lambda e: crashes.append(str(e)))
    try:
        # A workspace of its own per notebook: nothing restored from an earlier page, only this document.
        workspace = re.sub(r"\W", "-", shot.stem)
        page.goto(f"{lab['base']}/lab/workspaces/{workspace}/tree/{relpath}?token={lab['token']}",
                  wait_until="domcontentloaded", timeout=RENDER_S * 1000)
        shot.parent.mkdir(parents=True, exist_ok=True)
        panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").first
        try:
            panel.locator(".jp-Cell").first.wait_for(timeout=RENDER_S * 1000)
        except PlaywrightTimeout:
            page.screenshot(path=str(shot))
            pytest.fail(f"{relpath}: no notebook cell on the page after {RENDER_S} s (screenshot: {shot})")
        handle = panel.element_handle()
        ready = f"""(root) => {{
            const m = ({MEASURE_JS})(root);
            return (m.dialogs.length > 0 || m.errorToasts.length > 0) ||
                   (m.cells >= {want['cells']} && m.renderedMarkdownCells >= {want['markdown']}
                    && m.loadedOutputImages >= {want['images']}
                    && m.mermaidSvgs + m.mermaidErrors.length >= {want['mermaid']}
                    && m.attachmentImages >= {want['attachments']});
        }}"""
        try:
            page.wait_for_function(ready, arg=handle, timeout=RENDER_S * 1000, polling=250)
        except PlaywrightTimeout:  # measured and reported below, with a screenshot of what was there
            pass
        screenshots(page, handle, shot)
        seen = page.evaluate(MEASURE_JS, handle)
        seen.update(outside=outside, crashes=crashes)
        if crashes:
            print(f"{relpath}: script errors in the page: {crashes}")
        return seen
    finally:
        page.close()


def screenshots(page, panel, shot: Path) -> None:
    """The whole notebook in ``shot``; one taller than MAX_SHOT_HEIGHT continues in ``<stem>-2.png``, ...

    The notebook scrolls inside its panel, not the page, so the viewport is made as tall as the notebook.
    """
    for old in shot.parent.glob(f"{shot.stem}-*.png"):
        old.unlink()
    height = page.evaluate(MEASURE_JS, panel)["scrollHeight"] + 200  # + menu, toolbar and status bars
    page.set_viewport_size({"width": 1280, "height": min(MAX_SHOT_HEIGHT, max(900, height))})
    page.wait_for_timeout(500)  # let the layout settle before the picture
    visible, total = page.evaluate("(root) => { const s = root.querySelector('.jp-WindowedPanel-outer');"
                                " return [s.clientHeight, s.scrollHeight]; }", panel)
    last = max(total - visible, 0)  # the largest scrollTop
    step = max(visible - 100, 100)  # the parts overlap a little, so that nothing falls between two pictures
    for part, top in enumerate([*range(0, last, step), last], start=1):
        if part > 1:
            page.evaluate("([root, top]) => { root.querySelector('.jp-WindowedPanel-outer').scrollTop = top; }",
                          [panel, top])
            page.wait_for_timeout(300)
        page.screenshot(path=str(shot if part == 1 else shot.with_name(f"{shot.stem}-{part}.png")))


def check(seen: dict, want: dict, name: str) -> None:
    """What a person checks: title, rendered markdown, figures, diagrams, no error on screen, no network."""
    assert not seen["dialogs"], f"{name}: a dialog is open: {seen['dialogs']}"
    assert not seen["errorToasts"], f"{name}: error notifications: {seen['errorToasts']}"
    assert seen["cells"] == want["cells"], f"{name}: {seen['cells']} of {want['cells']} cells on the page"
    assert want["title"] in seen["h1"], f"{name}: title {want['title']!r} not among the page's headings {seen['h1']}"
    assert seen["renderedMarkdownCells"] == want["markdown"], \
        f"{name}: {seen['renderedMarkdownCells']} of {want['markdown']} markdown cells rendered"
    assert want["h2"] in seen["h2"], f"{name}: heading {want['h2']!r} not rendered (h2s: {seen['h2'][:5]})"
    assert seen["loadedOutputImages"] >= want["images"], \
        f"{name}: {seen['loadedOutputImages']} figures shown ({seen['outputImages']} <img> in outputs), " \
        f"{want['images']} stored in the notebook"
    assert not seen["mermaidErrors"], f"{name}: mermaid could not draw: {seen['mermaidErrors']}"
    assert seen["mermaidSvgs"] == want["mermaid"], \
        f"{name}: {seen['mermaidSvgs']} mermaid diagrams drawn, {want['mermaid']} mermaid blocks in the notebook"
    assert seen["attachmentImages"] == want["attachments"], \
        f"{name}: {seen['attachmentImages']} attached pictures shown, {want['attachments']} in the notebook"
    assert seen["tracebacks"] == 0, f"{name}: {seen['tracebacks']} tracebacks shown"
    assert not seen["widgetErrors"], f"{name}: widgets fail to display: {seen['widgetErrors'][:3]}"
    assert not seen["outside"], f"{name}: the page asked the network for {seen['outside'][:5]}"


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_lesson_reads_well_in_jupyterlab(name, lab, browser):
    want = expected(ROOT / "notebooks" / name)
    seen = view(browser, lab, f"notebooks/{name}", want, SCREENSHOTS / f"{Path(name).stem}.png")
    check(seen, want, name)


@pytest.mark.slow
def test_mermaid_diagrams_are_drawn(lab, browser):
    """The diagram check sees a diagram: a copy of lesson 1 with one mermaid cell shows exactly one SVG."""
    PROBE_DIR.mkdir(parents=True, exist_ok=True)
    probe = PROBE_DIR / "probe.ipynb"
    try:
        nb = nbformat.read(ROOT / "notebooks" / NOTEBOOKS[0], as_version=4)
        nb.cells.insert(1, nbformat.v4.new_markdown_cell(
            "A diagram:\n\n```mermaid\nflowchart LR\n  A[stories] --> B[tokens]\n```"))
        nbformat.write(nb, probe)
        want = expected(probe)
        assert want["mermaid"] == 1
        seen = view(browser, lab, probe.relative_to(ROOT).as_posix(), want, PROBE_DIR / "probe.png")
        check(seen, want, probe.name)
    finally:
        shutil.rmtree(PROBE_DIR, ignore_errors=True)
