"""p2p-demo: the translate function, the HTTP API (gradio_client) and the page in a real headless Chromium."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import p2p

# the demo extra (in dev): CI must run these tests, so there a missing package fails instead of skipping
gradio_client = (
    __import__("gradio_client")
    if os.environ.get("CI")
    else pytest.importorskip("gradio_client", reason="the demo extra (pip install p2p[demo])")
)
from p2p.demo import choose_canvas, translate  # noqa: E402
from p2p.errors import UsageError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SHOTS = Path(os.environ.get("P2P_DEMO_SCREENSHOTS", "/tmp/p2p-demo-screenshots"))


@pytest.fixture(scope="module")
def tiny_generator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("demo") / "G"
    p2p.create_model("unet_128", ngf=4).save_pretrained(folder)
    return folder


def label_map(w: int, h: int) -> Image.Image:
    return Image.fromarray(np.random.RandomState(0).randint(0, 255, (h, w, 3), np.uint8))


def test_translate_is_the_translators_eval_output(tiny_generator: Path) -> None:
    G = p2p.load_generator(tiny_generator)
    img = label_map(101, 77)
    [(out, label)] = translate({"tiny": G}, img, "eval")
    expected = p2p.Translator(G, inference="eval", device="cpu")(img)
    assert label == "tiny" and out.size == (101, 77)
    assert np.array_equal(np.asarray(out), np.asarray(expected))  # same code path: exactly equal


def test_inputs_above_the_pixel_budget_are_refused_with_the_budget_named(tiny_generator: Path) -> None:
    G = p2p.load_generator(tiny_generator)
    with pytest.raises(UsageError, match=r"40x30 = 1,200 pixels, above the demo's budget of 1,000"):
        translate({"tiny": G}, label_map(40, 30), max_pixels=1000)
    [(out, _)] = translate({"tiny": G}, label_map(40, 30).convert("L"), max_pixels=1200)  # grey: converted
    assert out.size == (40, 30) and out.mode == "RGB"


def test_the_canvas_suits_the_model(tiny_generator: Path) -> None:
    G = p2p.load_generator(tiny_generator)
    assert choose_canvas({"g": G}, "cityscapes").colors[0] == (128, 64, 128)  # road, train id 0
    assert choose_canvas({"g": G}, "edges").background == (255, 255, 255)
    labels = Image.new("RGB", (64, 64), (0, 0, 170))
    labels.paste((255, 85, 0), (16, 16, 48, 48))
    derived = choose_canvas({"g": G}, "auto", [labels])  # nothing known: the examples' colours
    assert set(derived.colors) == {(0, 0, 170), (255, 85, 0)}
    with pytest.raises(UsageError, match="--palette nope"):
        choose_canvas({"g": G}, "nope")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_generator: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "GRADIO_ANALYTICS_ENABLED": "False"}
    cmd = [sys.executable, "-m", "p2p.cli.demo", "--checkpoint", str(tiny_generator), "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("p2p-demo did not start listening within 90 s")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.slow
def test_api_returns_the_inputs_size_and_survives_a_bad_upload(server: str, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    good, bad = tmp_path / "labels.png", tmp_path / "bad.png"
    label_map(133, 90).convert("RGBA").save(good)  # RGBA: converted for the RGB model
    bad.write_text("not an image")
    client = Client(server, verbose=False)
    out = client.predict(handle_file(str(good)), "eval", 0, 0, api_name="/translate")
    assert Image.open(out).size == (133, 90)
    with pytest.raises(Exception, match="not an image"):
        client.predict(handle_file(str(bad)), "eval", 0, 0, api_name="/translate")
    out = client.predict(handle_file(str(good)), "paper", 1, 64, api_name="/translate")  # still serving
    assert Image.open(out).size == (133, 90)
    # two users at once: the queue serves both
    jobs = [client.submit(handle_file(str(good)), "eval", 0, 0, api_name="/translate") for _ in range(2)]
    assert [Image.open(j.result(timeout=120)).size for j in jobs] == [(133, 90)] * 2


@pytest.fixture
def browser() -> Iterator[object]:
    webdriver = (
        pytest.importorskip("selenium.webdriver")
        if not os.environ.get("CI")
        else __import__("selenium.webdriver", fromlist=["webdriver"])
    )
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()) and not os.environ.get("CI"):
        pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,900"):  # fmt: skip
        opts.add_argument(flag)
    import tempfile

    profile = tempfile.mkdtemp(prefix="p2p-chromium-")
    opts.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def output_size(driver, timeout: float = 60) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """The natural pixel size of the first output image, once it has loaded."""
    deadline = time.time() + timeout
    js = "const i = document.querySelector('#p2p-output-0 img'); return i && i.complete && i.naturalWidth ? [i.naturalWidth, i.naturalHeight] : null;"
    while time.time() < deadline:
        if size := driver.execute_script(js):
            return tuple(size)  # type: ignore[return-value]
        time.sleep(0.5)
    raise AssertionError("no output image appeared")


@pytest.mark.slow
def test_browser_upload_translate(server: str, browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    img = tmp_path / "labels.png"
    label_map(150, 110).save(img)
    browser.get(server)
    browser.implicitly_wait(30)
    browser.find_element(By.CSS_SELECTOR, "#p2p-upload input[type=file]").send_keys(str(img))
    time.sleep(2)  # the upload reaches the server
    browser.find_element(By.ID, "p2p-translate").click()
    assert output_size(browser) == (150, 110)
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / "demo_upload.png"))


@pytest.mark.slow
def test_browser_draw_translate(server: str, browser) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    browser.get(server)
    browser.implicitly_wait(30)
    browser.find_element(By.XPATH, "//button[@role='tab' and contains(., 'Draw')]").click()
    canvas = browser.find_element(By.CSS_SELECTOR, "#p2p-canvas canvas")
    time.sleep(1)
    actions = ActionChains(browser)
    actions.move_to_element_with_offset(canvas, -40, -40).click_and_hold()
    for dx, dy in ((20, 5), (20, 10), (10, 20), (-10, 20)):
        actions.move_by_offset(dx, dy)
    actions.release().perform()
    browser.find_element(By.ID, "p2p-translate-drawing").click()
    assert output_size(browser) == (256, 256)  # the canvas's size
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / "demo_draw.png"))
