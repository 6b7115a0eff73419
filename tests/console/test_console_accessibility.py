"""Accessibility checks of every console page: labelled controls, valid references, unique ids, contrast."""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.console.test_console_session import SAMPLE_EXPERIMENT, _pages
from tests.evidence_log import start_pin_experiment
from wallet_market.console import charts

CSS = Path(__file__).resolve().parents[2] / "wallet_market" / "console" / "static" / "console.css"


class Controls(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: list[str] = []
        self.labelled: set[str] = set()
        self.controls: list[dict] = []
        self.described: list[str] = []
        self.lang = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "html":
            self.lang = attrs.get("lang")
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "label" and attrs.get("for"):
            self.labelled.add(attrs["for"])
        if tag in ("input", "select", "textarea") and attrs.get("type") not in ("hidden", "submit", "button"):
            self.controls.append(attrs)
        if attrs.get("aria-describedby"):
            self.described.extend(attrs["aria-describedby"].split())


def _check(html: str, where: str) -> int:
    parsed = Controls()
    parsed.feed(html)
    assert parsed.lang == "en", where
    assert len(parsed.ids) == len(set(parsed.ids)), f"{where}: repeated ids"
    for control in parsed.controls:
        assert control.get("id") in parsed.labelled or control.get("aria-label"), f"{where}: {control} has no label"
    for ref in parsed.described:
        assert ref in parsed.ids, f"{where}: aria-describedby names a missing {ref}"
    return len(parsed.controls)


def test_every_control_of_every_page_has_a_label(demo_app, pm, finance, comps):
    start_pin_experiment(comps, SAMPLE_EXPERIMENT)
    checked = _check(demo_app.test_client().get("/console/login").get_data(as_text=True), "/console/login")
    for console, role in ((pm, "pm"), (finance, "finance")):
        for path in _pages(demo_app, role):
            checked += _check(console.client.get(path, follow_redirects=True).get_data(as_text=True), path)
    assert checked > 100  # the catalogue forms alone have dozens of controls
    # and the pages with results or errors shown
    _check(pm.get("/console/preview?submitted=1&page=home&logged_in=1&risk_tier=A&age=x").get_data(as_text=True), "preview")
    _check(pm.post("/console/catalogue/products/xingyun_loan", {"promo": "月息1分"}).get_data(as_text=True), "guard error")
    _check(finance.post("/console/compare", {"scenario": "name = "}).get_data(as_text=True), "compare error")
    _check(pm.post("/console/experiments/new", {"experiment_id": "Bad Id", "traffic_bps": "x"}).get_data(as_text=True),
           "experiment error")
    _check(pm.get("/console/evaluate?submitted=1&candidate=99&from=x").get_data(as_text=True), "evaluation error")


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_contrast_helper_matches_known_values():
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0
    assert round(contrast("#767676", "#ffffff"), 2) == 4.54  # the lightest grey that passes on white


def _variables() -> dict[str, str]:
    return dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{6})", CSS.read_text(encoding="utf-8")))


@pytest.mark.parametrize(("text", "background"), [
    ("ink", "paper"), ("ink", "wash"), ("muted", "paper"), ("muted", "wash"), ("accent", "paper"), ("accent-ink", "accent"),
    ("danger", "paper"), ("ok-ink", "ok-bg"), ("warn-ink", "warn-bg"), ("bad-ink", "bad-bg"), ("accent", "wash"),
])
def test_text_colours_have_a_contrast_of_at_least_4_5(text, background):
    colours = _variables()
    assert contrast(colours[text], colours[background]) >= 4.5


def test_header_and_chart_colours_have_enough_contrast():
    assert contrast("#ffffff", "#14325a") >= 4.5  # header links
    for colour in (*charts.COLOURS, charts.TEXT):
        assert contrast(colour, "#ffffff") >= 4.5, colour
    assert contrast("#8a3a00", "#ffffff") >= 4.5  # promotion text on the preview's cards
