"""``binsort serve`` in a real browser: headless Chromium uploads a photo through the page and
the bin is read off it. Needs Debian's chromium and chromium-driver (``make browser``) and
selenium; skipped, with the reason, where they are absent."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
HELD_OUT = Path(__file__).parents[1] / "examples" / "held-out"
SCREENSHOT = Path(__file__).parents[1] / "docs" / "figures" / "serve.png"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and DRIVER), reason="no chromium/chromedriver: run make browser"
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server():
    """``binsort serve`` with the bundled model on a free loopback port."""
    yield from start_server()


@pytest.fixture
def collecting(tmp_path: Path):
    """``binsort serve --collect`` into ``tmp_path / "collected"``."""
    folder = tmp_path / "collected"
    for url in start_server("--collect", str(folder)):
        yield url, folder


def start_server(*options: str):
    port = free_port()
    script = Path(sys.executable).parent / "binsort"
    process = subprocess.Popen(
        [str(script), "serve", "--port", str(port), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "healthz", timeout=1) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("binsort serve did not start: " + (process.stdout.read() or ""))
    yield url
    process.terminate()
    process.wait(timeout=10)


def browser(tmp_path: Path):
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=420,900",  # a phone-sized screen
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=webdriver.ChromeService(DRIVER), options=options)


def test_a_photo_uploaded_through_the_page_shows_its_bin(server: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    photo = HELD_OUT / "glass12.jpg"
    with urllib.request.urlopen(urllib.request.Request(server + "model")) as response:
        info = json.load(response)
    driver = browser(tmp_path)
    try:
        driver.get(server)
        WebDriverWait(driver, 20).until(lambda d: "Model:" in d.find_element(By.ID, "model").text)
        driver.find_element(By.ID, "photo").send_keys(str(photo))
        WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "answer").is_displayed())
        shown = driver.find_element(By.ID, "bin").text
        summary = driver.find_element(By.ID, "summary").text
        shot = tmp_path / "serve.png"
        driver.save_screenshot(str(shot))
    finally:
        driver.quit()
    from binsort.predict import load_model, predict_photos

    model = load_model(None)
    from binsort.bins import load_bin_map

    (row,) = predict_photos([photo], model, load_bin_map("psu", model.classes))
    assert row.bin.name in shown and row.label in summary
    assert info["bins"][row.label]["bin"] in {b["bin"] for b in info["bins"].values()}
    assert shot.stat().st_size > 10_000
    if os.environ.get("BINSORT_UPDATE_SCREENSHOT"):
        shutil.copyfile(shot, SCREENSHOT)  # the README's picture of the page


def test_a_photo_confirmed_on_the_page_is_kept_in_its_class_folder(collecting, tmp_path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, folder = collecting
    driver = browser(tmp_path)
    try:
        driver.get(url)
        WebDriverWait(driver, 20).until(
            lambda d: d.find_element(By.ID, "collecting").is_displayed()
        )
        assert "kept on this computer" in driver.find_element(By.ID, "collecting").text
        driver.find_element(By.ID, "photo").send_keys(str(HELD_OUT / "glass12.jpg"))
        WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "ask").is_displayed())
        assert not folder.exists() or not list(folder.rglob("*.jpg"))  # nothing kept yet
        # The model answers glass for this photo; "No, it is metal" corrects it.
        driver.find_element(By.CSS_SELECTOR, "#choices button[data-label=metal]").click()
        WebDriverWait(driver, 20).until(lambda d: "Kept as" in d.find_element(By.ID, "kept").text)
    finally:
        driver.quit()
    kept = list((folder / "metal").glob("*.jpg"))
    assert len(kept) == 1 and kept[0].stat().st_size > 1000
