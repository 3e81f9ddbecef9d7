"""The live preview's page in a real headless browser: Debian's chromium and chromium-driver
(tools/apt-packages.txt) through selenium (the project's `test` extra). The page loads, its
picture arrives (naturalWidth > 0, a real picture, not the first placeholder), its counters fill
in, and a screenshot shows the picture. Skipped, with the reason, where no browser is installed.

Set PREVIEW_SCREENSHOT_DIR to keep the screenshot (page.png) and the server's snapshot.png."""

from __future__ import annotations

import os
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from preview_source import Feeder

from rig.preview import PreviewFeed, PreviewServer
from rig.preview.render import ON_RGB

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    pytest.skip(f"no headless browser: {CHROMIUM} and {CHROMEDRIVER} are needed (apt-get install "
                "chromium chromium-driver, as tools/apt-packages.txt lists)", allow_module_level=True)


def _browser(profile: Path) -> Any:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    # headless, and nothing that reaches for the network (a closed network makes chromium hang
    # on its background services); root needs --no-sandbox
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1400,900"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    return driver


def test_the_page_shows_the_picture_and_the_counters(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    feed = PreviewFeed()
    with PreviewServer(feed, port=0, title="rig record") as server:
        feeder = Feeder(feed, tmp_path, mirror="event").start()
        driver = _browser(tmp_path / "profile")
        try:
            driver.get(server.url)
            WebDriverWait(driver, 30, poll_frequency=0.1).until(lambda d: d.execute_script(
                "const i = document.getElementById('snap');"
                "return i.complete && i.naturalWidth > 0 && !i.src.endsWith('seq=first')"
                " && document.getElementById('phase').textContent === 'recording'"
                " && document.getElementById('counters').textContent.includes('frames received');"))
            time.sleep(0.5)  # a few more pictures: the page keeps up
            # the size of a loaded picture: the page swaps in a newer one every frame period,
            # and while that one loads the natural size reads 0
            natural = WebDriverWait(driver, 10, poll_frequency=0.02).until(lambda d: d.execute_script(
                "const i = document.getElementById('snap');"
                "return i.complete && i.naturalWidth > 0 ? [i.naturalWidth, i.naturalHeight] : null;"))
            counters = driver.find_element(By.ID, "counters").text
            histogram_bars = len(driver.find_elements(By.CSS_SELECTOR, "#hist rect"))
            shot = driver.get_screenshot_as_png()
            snapshot = urllib.request.urlopen(server.url + "snapshot.png", timeout=10).read()
        finally:
            driver.quit()
            feeder.stop()
    keep = os.environ.get("PREVIEW_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        (Path(keep) / "page.png").write_bytes(shot)
        (Path(keep) / "snapshot.png").write_bytes(snapshot)
    page = cv2.imdecode(np.frombuffer(shot, np.uint8), cv2.IMREAD_COLOR)
    picture = cv2.imdecode(np.frombuffer(snapshot, np.uint8), cv2.IMREAD_COLOR)
    assert natural == [picture.shape[1], picture.shape[0]]
    assert "frames received" in counters and "pulses sent" in counters
    assert histogram_bars == 64
    assert page is not None and page.shape[1] >= 1000
    assert page.std() > 20, "a blank screenshot"
    # the picture is on the screen: the events' ON blue is there (JPEG and scaling: near it)
    near_on = np.abs(page.astype(int) - np.array(ON_RGB[::-1])).max(axis=2) < 60
    assert near_on.sum() > 20
