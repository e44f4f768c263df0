"""The page in a real browser: Debian's headless Chromium, driven by Playwright.

It opens the page, listens to the demo tone call and checks, from inside the
page (its AnalyserNode, after playback scheduling), that audio arrived and
played at 440 Hz; then talks into the echo call and hears its own test tone
come back. Screenshots are kept under out/shim/. Without Chromium (``make
browser`` installs it) the test is skipped, saying so; it never passes on a
page that did not play.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from mediastream.emulator import ECHO_CALL_ID, TONE_CALL_ID
from tests.shim.conftest import Shim

ARTIFACTS = Path(__file__).resolve().parents[2] / "out" / "shim"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def browser() -> str:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed: `make browser` installs it")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright package is not installed (uv sync)")
    return chromium


async def wait_for_tone(page: Any, hz: float, frames: int) -> dict[str, Any]:
    """Wait until the page has received `frames` frames and hears `hz` loudest."""
    await page.wait_for_function(
        f"""() => {{
            const m = window.mediastream.measure();
            return m.frames >= {frames} && m.levelDb > -40 && Math.abs(m.peakHz - {hz}) < 5;
        }}""",
        timeout=10_000,
    )
    measured: dict[str, Any] = await page.evaluate("window.mediastream.measure()")
    return measured


async def test_listen_and_talk_in_a_real_browser(shim: Shim, tmp_path: Path) -> None:
    chromium = browser()
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    async with async_playwright() as pw:
        # A fresh profile each run: nothing cached, no permission remembered.
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=chromium, headless=True, args=FLAGS
        )
        try:
            page = await context.new_page()
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on(
                "console",
                lambda msg: (
                    problems.append(f"console: {msg.text}") if msg.type == "error" else None
                ),
            )
            await page.goto(f"{shim.base}/")
            assert page.url.endswith("/ui/")
            listen = f'button[data-id="{TONE_CALL_ID}"][data-action="listen"]'
            await page.click(listen)
            heard = await wait_for_tone(page, 440, frames=60)
            assert heard["state"] == "running" and heard["time"] > 0.5
            assert await page.locator(listen).get_attribute("class") == "on"
            await page.click("#refresh")
            await page.wait_for_selector(f'#streams td:has-text("{TONE_CALL_ID}")')
            await page.screenshot(path=str(ARTIFACTS / "browser-listen-tone.png"), full_page=True)

            # Stop listening to the tone; talk into the echo call and listen to it.
            await page.click(listen)
            await page.click(f'button[data-id="{ECHO_CALL_ID}"][data-action="listen"]')
            await page.click(f'button[data-id="{ECHO_CALL_ID}"][data-action="talk"]')
            echoed = await wait_for_tone(page, 1000, frames=60)
            assert echoed["levelDb"] > -30
            await page.screenshot(path=str(ARTIFACTS / "browser-talk-echo.png"), full_page=True)
            log = await page.locator("#log").inner_text()
            assert "started stream" in log
        finally:
            await context.close()
    assert problems == []
    assert (ARTIFACTS / "browser-listen-tone.png").stat().st_size > 10_000


async def test_the_page_shows_refusals_keeps_the_list_live_and_fits_a_phone(
    shim: Shim, tmp_path: Path
) -> None:
    chromium = browser()
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=chromium,
            headless=True,
            args=FLAGS,
            viewport={"width": 360, "height": 740},
        )
        try:
            page = await context.new_page()
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            # /ui without the slash reaches the page.
            await page.goto(f"{shim.base}/ui")
            assert page.url.endswith("/ui/")
            await page.wait_for_selector(f'#demo td:has-text("{TONE_CALL_ID}")')

            # At 360 px nothing makes the page scroll sideways.
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= 360, f"the page is {width} px wide at a 360 px viewport"

            # A malformed ID and an unknown call: the refusal's reason is shown.
            # (An ID is 1-128 letters, digits, '.', '_', ':' or '-': Asterisk's own too.)
            await page.fill("#custom-id", "not*an*id")
            await page.click("#custom-listen")
            await page.wait_for_selector("#problem:has-text('400')")
            shown = await page.locator("#problem").inner_text()
            assert "INVALID_ID" in shown and "WebSocket error" not in shown, shown
            unknown = "00000000-0000-4000-8000-00000000dead"
            await page.fill("#custom-id", unknown)
            await page.click("#custom-listen")
            await page.wait_for_selector("#problem:has-text('CALL_NOT_FOUND')")
            shown = await page.locator("#problem").inner_text()
            assert "404" in shown and unknown in shown, shown
            await page.screenshot(path=str(ARTIFACTS / "browser-360-refused.png"), full_page=True)

            # The streams list updates by itself: a stream opened elsewhere appears,
            # without the refresh button.
            live = 10_000  # ms: the page polls every 2 s; generous for a loaded machine
            async with shim.client() as client, client.listen(call_id=TONE_CALL_ID):
                row = f'#streams td:has-text("{TONE_CALL_ID}")'
                await page.wait_for_selector(row, timeout=live)
            await page.wait_for_selector("#streams td:has-text('no active streams')", timeout=live)
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= 360, f"the page is {width} px wide at a 360 px viewport"
            await page.screenshot(path=str(ARTIFACTS / "browser-360.png"), full_page=True)

            # The microphone goes through an AudioWorklet, never a ScriptProcessorNode.
            source = await (await page.request.get(f"{shim.base}/ui/")).text()
            assert "createScriptProcessor" not in source and "audioWorklet.addModule" in source
            worklet = await page.request.get(f"{shim.base}/ui/mic-worklet.js")
            assert worklet.ok and "registerProcessor" in await worklet.text()
        finally:
            await context.close()
    assert problems == []
