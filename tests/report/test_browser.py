"""The report in a real headless browser (Debian chromium, installed by `make browser`).

Checks: the page loads with every image decoded and no JavaScript/console error (read from the
attributes the page's inline checker writes on <body>, via --dump-dom), and a 1280x2000 screenshot is
a non-blank PNG. A negative control proves the checker does catch a broken image and a script error.
Skipped with a clear message where chromium cannot be found.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurodit.report import build_report


def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


CHROMIUM = _find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium not found: run `make browser` (as root: apt-get install chromium) to enable the "
           "headless-browser report test")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]


def chromium(page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args, page.resolve().as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def body_attrs(dom: str) -> dict[str, str]:
    tag = re.search(r"<body([^>]*)>", dom)
    assert tag, "no <body> in the dumped DOM"
    return dict(re.findall(r'(data-[a-z-]+)="([^"]*)"', tag.group(1)))


def console_errors(stderr: str) -> list[str]:
    """Page console messages at error level that chromium logs with --enable-logging=stderr."""
    return [line for line in stderr.splitlines() if "CONSOLE" in line and ("Uncaught" in line or
                                                                          "ERROR" in line.split("CONSOLE")[0])]


@pytest.fixture
def report_page(stage_dirs, tmp_path) -> Path:
    return build_report([stage_dirs["root"]], tmp_path / "report.html")


@pytest.mark.slow
def test_page_loads_without_broken_images_or_errors(report_page, tmp_path):
    res = chromium(report_page, tmp_path, "--virtual-time-budget=10000", "--dump-dom")
    assert res.returncode == 0, res.stderr[-2000:]
    attrs = body_attrs(res.stdout)
    n_img = report_page.read_text().count("<img ")
    assert attrs.get("data-loaded") == "true", attrs
    assert attrs["data-images"] == str(n_img) and n_img >= 9
    assert attrs["data-images-broken"] == "0" and attrs["data-images-ok"] == "true"
    assert attrs["data-js-errors"] == ""
    assert console_errors(res.stderr) == []


@pytest.mark.slow
def test_checker_catches_broken_image_and_script_error(report_page, tmp_path):
    bad = tmp_path / "bad.html"
    html = report_page.read_text().replace(
        "</main>", '<img src="data:image/png;base64,AAAA" alt="broken"><script>notDefined();</script></main>')
    bad.write_text(html)
    res = chromium(bad, tmp_path, "--virtual-time-budget=10000", "--dump-dom")
    attrs = body_attrs(res.stdout)
    assert attrs["data-images-ok"] == "false" and attrs["data-images-broken"] == "1"
    assert "notDefined" in attrs["data-js-errors"]
    assert any("notDefined" in line for line in console_errors(res.stderr))


@pytest.mark.slow
def test_screenshot_not_blank(report_page, tmp_path):
    shot = tmp_path / "shot.png"
    res = chromium(report_page, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000")
    assert shot.is_file(), res.stderr[-2000:]
    im = Image.open(shot).convert("RGB")
    assert im.size == (1280, 2000)
    px = np.asarray(im, dtype=float)
    assert px.std() > 20  # header, text and figures, not a blank page
    # the header band is our accent colour, and the brain mosaics put dark pixels on the page
    assert np.allclose(px[20, 640], [0x1F, 0x6F, 0x8B], atol=8)
    assert (px.mean(axis=2) < 30).mean() > 0.02
