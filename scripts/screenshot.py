"""Screenshot of the translation page with an attention heatmap, for the README.

Starts ``python -m serve`` on a checkpoint, opens the page in headless Chromium (Debian's
``chromium`` and ``chromium-driver``), translates the given sentences and saves a PNG:

    python scripts/screenshot.py --checkpoint m30k_de_en.ckpt --out docs/web-page.png \\
        --text "Ein Hund rennt mit einem Ball im Maul über den Strand." \\
        --text "Eine Frau in einem roten Kleid sitzt auf einer Bank."

``chromium()`` is also how tests/test_web.py starts its browser.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
# Flags that work headless as root in a container with no network beyond this machine.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def browser_missing() -> str | None:
    """Why Chromium cannot be driven here, or None."""
    for program in ("chromium", "chromedriver"):
        if shutil.which(program) is None:
            return f"{program} is not installed (apt-get install chromium chromium-driver; `make test` does it as root)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


def chromium(width: int = 1100, height: int = 900, profile: str | None = None):
    """A headless Chromium driven by Selenium; the caller quits it. ``profile``: a fresh directory."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in (*CHROMIUM_FLAGS, f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile or tempfile.mkdtemp(prefix='chromium-')}")
    # an explicit driver: Selenium Manager would otherwise try to download one
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="model .ckpt file")
    p.add_argument("--text", action="append", help="a sentence to translate (repeat for several)")
    p.add_argument("--pick", type=int, default=1, help="sentence (1-based) whose attention is drawn")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--width", type=int, default=1000)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "web-page.png")
    args = p.parse_args(argv)
    if (reason := browser_missing()) is not None:
        sys.exit(f"screenshot: {reason}")
    texts = args.text or ["A man in a blue shirt is riding a bike."]

    from demo import DemoError, Server, free_port  # scripts/demo.py, beside this file
    from selenium.webdriver import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    server = Server(args.checkpoint, free_port())
    try:
        server.wait_ready(httpx.Client(), timeout=240)
    except DemoError as e:
        server.kill()
        sys.exit(f"screenshot: {e}")
    driver = chromium(args.width, 1000)
    try:
        driver.get(f"{server.url}/")
        wait = WebDriverWait(driver, 120)
        wait.until(lambda d: d.find_element(By.ID, "source").get_attribute("value"))
        beam = driver.find_element(By.ID, "beam")
        beam.clear()
        beam.send_keys(str(args.beam))
        driver.find_element(By.ID, "text").send_keys("\n".join(texts))
        driver.find_element(By.ID, "translate").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "Translated"))
        driver.find_elements(By.CSS_SELECTOR, ".attention-button")[args.pick - 1].click()
        for details in driver.find_elements(By.CSS_SELECTOR, ".alternatives"):
            driver.execute_script("arguments[0].open = true", details)
        # under the mouse (the page shows its weight): the strongest cell outside the end-of-sentence ones
        cell = driver.execute_script(
            "const cells = [...document.querySelectorAll('rect.hm-cell')];"
            "const last = (k) => Math.max(...cells.map((c) => Number(c.dataset[k])));"
            "const inner = cells.filter((c) => c.dataset.row < last('row') && c.dataset.col < last('col'));"
            "return inner.reduce((a, b) => (Number(b.dataset.weight) > Number(a.dataset.weight) ? b : a));"
        )
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", cell)
        ActionChains(driver).move_to_element(cell).perform()
        driver.execute_script("window.scrollTo(0, 0)")
        height = driver.execute_script("return document.documentElement.scrollHeight")
        metrics = {"width": args.width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)  # the whole page in view
        args.out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.out))
        print(f"wrote {args.out} ({args.width}x{height})")
    finally:
        driver.quit()
        server.stop()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
