"""The page's model selector in a real headless Chromium, against the app on the tiny models (every model enabled):
the form takes the chosen model's ranges and presets, a video from a model other than the default plays, and Vary
changes the model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.support.ui import Select

from generator.video import probe_mp4
from tests.web.webharness import SAMPLE_IMAGE, WebApp, by_id, sign_in_browser, started_app, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

VIDEO_WAIT_S = 300.0


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebApp]:
    with started_app(tmp_path_factory.mktemp("webmodels"), {}) as app:
        yield app


def _set(browser: Any, element_id: str, value: str) -> None:
    field = by_id(browser, element_id)
    if field.tag_name == "select":
        Select(field).select_by_value(value)
    else:
        field.clear()
        field.send_keys(value)


def _finished(browser: Any) -> dict[str, Any]:
    wait_for(
        browser,
        lambda b: by_id(b, "job-status").get_attribute("data-status") == "succeeded",
        timeout=VIDEO_WAIT_S,
        what="the video",
    )
    return wait_for(
        browser,
        lambda b: b.execute_script(
            "const v = document.getElementById('result-video');"
            "return v.readyState >= 2 && v.duration > 0 ? {src: v.currentSrc, width: v.videoWidth, "
            "height: v.videoHeight} : null;"
        ),
        what="the video playing",
    )


def _shown_job(browser: Any) -> int:
    return int(by_id(browser, "job-title").text.removeprefix("Job #"))


def test_choose_a_model_make_its_video_and_vary_to_another(app: WebApp, browser: Any, tmp_path: Path) -> None:
    sign_in_browser(browser, app.printed_link())
    wait_for(
        browser,
        lambda b: by_id(b, "app").is_displayed() and by_id(b, "model-field").is_displayed(),
        what="the form with its model selector",
    )
    models = Select(by_id(browser, "model"))
    assert [(o.get_attribute("value"), o.text) for o in models.options] == [
        ("i2vgenxl", "I2VGen-XL"),
        ("wan22-5b", "Wan 2.2 (5B)"),
        ("ltxv", "LTX-Video (fast)"),
    ]
    assert models.first_selected_option.get_attribute("value") == "i2vgenxl"  # the first enabled is the default
    assert by_id(browser, "frames").get_attribute("max") == "32"

    # LTX-Video: its resolutions, its ranges and its presets; guidance fixed, no negative prompt
    _set(browser, "model", "ltxv")
    resolutions = [o.get_attribute("value") for o in Select(by_id(browser, "resolution")).options]
    assert resolutions == ["512p", "720p"]
    frames = by_id(browser, "frames")
    assert (frames.get_attribute("min"), frames.get_attribute("max"), frames.get_attribute("step")) == ("9", "257", "8")
    assert by_id(browser, "steps").get_attribute("max") == "10"
    assert by_id(browser, "guidance").get_attribute("value") == "1" and not by_id(browser, "guidance").is_enabled()
    assert not by_id(browser, "negative_prompt").is_enabled()
    assert "LTX-Video (fast): 512p, 720p, 9-257 frames (8k+1)" in by_id(browser, "model-limits").text
    browser.find_element("css selector", '.preset[data-preset="quick"]').click()
    assert (frames.get_attribute("value"), by_id(browser, "steps").get_attribute("value")) == ("65", "4")

    by_id(browser, "image").send_keys(str(SAMPLE_IMAGE))
    wait_for(browser, lambda b: "Image accepted" in by_id(b, "image-message").text, what="the image check")
    _set(browser, "prompt", "the clouds drift over the hills")
    by_id(browser, "advanced").click()
    _set(browser, "frames", "9")  # few frames for the CPU
    by_id(browser, "generate").click()
    wait_for(browser, lambda b: _shown_job(b) > 0, what="the job")
    ltx_id = _shown_job(browser)
    video = _finished(browser)
    assert (video["width"], video["height"]) == (864, 512)  # 512p at the image's 5:3, multiples of 32
    status, _, mp4 = app.call("GET", video["src"])
    path = tmp_path / "ltx.mp4"
    path.write_bytes(mp4)
    assert status == 200 and probe_mp4(path).frames == 9
    shown = wait_for(browser, lambda b: by_id(b, "result-params").text, what="the parameters")
    assert "LTX-Video (fast) · quick · 512p" in shown and "9 frames" in shown and "4 steps" in shown, shown
    job = app.get_json(f"/api/jobs/{ltx_id}")
    assert job["params"]["model"] == "ltxv" and job["model_name"] == "LTX-Video (fast)"

    # Vary: the form takes the job's model and values; switching to I2VGen-XL takes its ranges and preset
    by_id(browser, "vary").click()
    wait_for(browser, lambda b: f"variation of job #{ltx_id}" in by_id(b, "variant-of").text, what="Vary's form")
    assert Select(by_id(browser, "model")).first_selected_option.get_attribute("value") == "ltxv"
    assert by_id(browser, "frames").get_attribute("value") == "9"
    _set(browser, "model", "i2vgenxl")
    assert by_id(browser, "frames").get_attribute("max") == "32" and by_id(browser, "negative_prompt").is_enabled()
    _set(browser, "resolution", "256p")
    _set(browser, "steps", "10")
    by_id(browser, "generate").click()
    wait_for(browser, lambda b: _shown_job(b) != ltx_id, what="the variation queued")
    child_id = _shown_job(browser)
    video = _finished(browser)
    assert min(video["width"], video["height"]) == 256
    child = app.get_json(f"/api/jobs/{child_id}")
    assert child["params"]["model"] == "i2vgenxl" and child["params"]["frames"] == 8  # I2VGen-XL's quick
    assert app.call("GET", f"/api/jobs/{child_id}/input")[2] == SAMPLE_IMAGE.read_bytes()  # the parent's image
    shown = wait_for(
        browser,
        lambda b: by_id(b, "output-name").text.endswith(f"_{child_id}.mp4") and by_id(b, "result-params").text,
        what="the variation's parameters",
    )
    assert shown and "I2VGen-XL · quick · 256p" in shown, shown
