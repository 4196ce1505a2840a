"""Drive a real headless Chromium over the DevTools protocol: type, click, read the page, take screenshots.

Used by the browser tests and, as ``python -m tests.app.browser``, to make the README's screenshot of the page
at ``/`` against a real model store::

    .venv/bin/python -m tests.app.browser --store models_store --out docs/img/ui.png

Only the standard library, ``websockets`` (a uvicorn[standard] dependency) and Debian's ``chromium``
(scripts/system-deps.sh) are needed. The server and the browser listen on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

from bench import server

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WIDTH, HEIGHT = 1280, 860


@contextlib.contextmanager
def serve(store: Path, log: Path) -> Iterator[str]:
    """The server (`bench.server.serve`) on `store`, its output in `log`; yields its base URL once /ready."""
    with server.serve(store, log_path=log) as running:
        yield running.url


class Page:
    """One browser tab: DevTools commands, waiting on JavaScript conditions, real key and mouse input."""

    def __init__(self, socket_: ClientConnection) -> None:
        self._ws = socket_
        self._next = 0

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        self._ws.send(json.dumps({"id": self._next, "method": method, "params": params}))
        while True:  # events arrive in between; only this command's answer is returned
            message = json.loads(self._ws.recv(timeout=60))
            if message.get("id") == self._next:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})  # type: ignore[no-any-return]

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"still false after {timeout} s: {expression}")
            time.sleep(0.05)

    def goto(self, url: str) -> None:
        self.send("Page.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False)
        self.send("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'")

    def type(self, selector: str, text: str) -> None:
        """Focus `selector` and type `text` one key at a time, as a person would."""
        self.click(selector)
        for char in text:
            self.send("Input.dispatchKeyEvent", type="keyDown", text=char, key=char, unmodifiedText=char)
            self.send("Input.dispatchKeyEvent", type="keyUp", key=char)

    def click(self, selector: str) -> None:
        """A real mouse click at the centre of the first element matching `selector` (scrolled into view)."""
        box = self.wait_for(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"], button="left", clickCount=1)

    def texts(self, selector: str) -> list[str]:
        return self.evaluate(  # type: ignore[no-any-return]
            f"[...document.querySelectorAll({json.dumps(selector)})].map(e => e.textContent.trim())"
        )

    def screenshot(self, path: Path) -> None:
        self.evaluate("window.scrollTo(0, 0)")
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=False)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[Page]:
    """A headless Chromium with one blank tab, driven over DevTools on a loopback port."""
    argv = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},{HEIGHT}",
        "about:blank",
    ]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        endpoint = None
        deadline = time.monotonic() + 60
        lines: list[str] = []
        while endpoint is None:
            line = process.stderr.readline()
            lines.append(line)
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            if found:
                endpoint = found.group(1)
            elif (not line and process.poll() is not None) or time.monotonic() > deadline:
                raise RuntimeError("chromium did not start:\n" + "".join(lines[-20:]))
        # Keep reading its log so a full pipe never blocks the browser.
        threading.Thread(target=process.stderr.read, daemon=True).start()
        host = endpoint.split("/devtools/")[0].removeprefix("ws://")
        with connect(endpoint, max_size=None) as browser:
            browser.send(json.dumps({"id": 1, "method": "Target.createTarget", "params": {"url": "about:blank"}}))
            while True:
                reply = json.loads(browser.recv(timeout=30))
                if reply.get("id") == 1:
                    target = reply["result"]["targetId"]
                    break
            with connect(f"ws://{host}/devtools/page/{target}", max_size=None) as tab:
                yield Page(tab)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def rate(page: Page, query: str, item_id: int, stars: int) -> None:
    """Type `query` into the search box, wait for `item_id` among the results and give it `stars`."""
    page.evaluate("document.getElementById('search').value = ''")
    page.type("#search", query)
    page.click(f'#results li[data-item-id="{item_id}"] button[data-stars="{stars}"]')
    page.wait_for(f"document.querySelector('#rated li[data-item-id=\"{item_id}\"]') !== null")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Screenshot the try-it page against a model store.")
    parser.add_argument("--store", type=Path, default=REPO / "models_store")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "ui.png")
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory() as tmp,
        serve(args.store.resolve(), Path(tmp) / "server.log") as url,
        chromium(Path(tmp) / "profile") as page,
    ):
        page.goto(f"{url}/")
        for query, item_id, stars in (("star wars", 50, 5), ("fargo", 100, 5), ("toy story", 1, 4)):
            rate(page, query, item_id, stars)
        page.evaluate("document.getElementById('search').value = ''")
        page.type("#search", "alien")
        page.wait_for("document.getElementById('recommendations').dataset.state === 'ready'")
        page.wait_for("[...document.querySelectorAll('.similar')].every(e => e.textContent.length > 0)")
        page.wait_for("(document.querySelector('#results li .title') || {}).textContent === 'Alien (1979)'")
        page.screenshot(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
