"""The console's pure parts: reading form fields, routing errors to fields, the draft diff, chart drawing."""
from __future__ import annotations

import warnings
from datetime import date
from xml.etree import ElementTree

import pytest
from werkzeug.datastructures import MultiDict

from wallet_market.console import charts, forms
from wallet_market.console.blueprint import _micro_fen
from wallet_market.console.diff import catalogue_diff, entity_changes, flatten


def test_reading_and_merging_a_partial_product_form():
    base = {"product_id": "p", "promo": "old", "funnel": {"ctr_bps": 100, "approval_rate_bps": 3000},
            "lending": None, "eligibility": {"risk_tiers": ["A", "B"]}, "requires_login": True}
    posted = MultiDict([("funnel.approval_rate_bps", "A=4000, B=3000 default=2000"), ("eligibility.risk_tiers", ""),
                        ("eligibility.risk_tiers", "C"), ("requires_login", "0"), ("lending.apr_bps", "")])
    submitted = forms.read_submitted(forms.PRODUCT_FORM, posted)
    merged, errors = forms.merge(forms.PRODUCT_FORM, base, submitted)
    assert errors == {}
    assert merged == {"product_id": "p", "promo": "old", "funnel": {"ctr_bps": 100, "approval_rate_bps": {"A": 4000, "B": 3000, "default": 2000}},
                      "lending": None, "eligibility": {"risk_tiers": ["C"]}, "requires_login": False}
    assert base["funnel"]["approval_rate_bps"] == 3000  # the draft entity is not changed in place


@pytest.mark.parametrize(("name", "raw", "message"), [
    ("funnel.ctr_bps", "4%", "enter a whole number"), ("daily_impression_cap", "lots", "leave it blank"),
    ("funnel.approval_rate_bps", "A=high", "cannot read 'A=high'"), ("funnel.approval_rate_bps", "", "per tier"),
])
def test_unreadable_fields_are_named(name, raw, message):
    _, errors = forms.merge(forms.PRODUCT_FORM, {}, {name: raw})
    assert list(errors) == [name] and message in errors[name][0]


def test_json_fields_report_where_they_break():
    _, errors = forms.merge(forms.PAGE_FORM, {}, {"slots": '[{"slot_id": }]'})
    assert errors["slots"][0].startswith("not valid JSON") and "line 1, column 14" in errors["slots"][0]


def test_errors_go_to_their_field_group_or_the_page():
    field_errors, general = forms.route_errors(forms.PRODUCT_FORM, {
        "products[xingyun_loan].promo": ["has a rate"],
        "products[xingyun_loan].lending": ["needs lending"],
        "funnel.ctr_bps": ["too high"],
        "rules[r1].product_id": ["no product"],
        "_schema": ["refusing this product"],
    }, "xingyun_loan")
    assert field_errors == {"promo": ["has a rate"], "lending": ["needs lending"], "funnel.ctr_bps": ["too high"]}
    assert general == [("rules[r1].product_id", "no product"), ("", "refusing this product")]
    page_errors, _ = forms.route_errors(forms.PAGE_FORM, {"pages[home].slots[top].position_weight_bps": ["0–10000"]}, "home")
    assert page_errors == {"slots": ["[top].position_weight_bps: 0–10000"]}


def test_marshmallow_messages_become_paths():
    assert forms.flatten_messages({"funnel": {"ctr_bps": ["bad"]}, "slots": {0: {"slot_id": ["missing"]}}, "_schema": ["x"]}) == {
        "funnel.ctr_bps": ["bad"], "slots[0].slot_id": ["missing"], "_schema": ["x"]}


def test_flatten_keys_lists_of_objects_by_their_id():
    page = {"page_id": "home", "slots": [{"slot_id": "top", "position_weight_bps": 10000}], "editorial_order": ["a", "b"]}
    assert flatten(page) == {"page_id": "home", "slots[top].slot_id": "top", "slots[top].position_weight_bps": 10000,
                             "editorial_order": ["a", "b"]}


def test_the_catalogue_diff_names_added_removed_and_changed_fields():
    published = {"products": [{"product_id": "a", "promo": "x", "funnel": {"ctr_bps": 1}}, {"product_id": "gone", "promo": ""}],
                 "rules": []}
    draft = {"products": [{"product_id": "a", "promo": "y", "funnel": {"ctr_bps": 1}}, {"product_id": "new", "promo": "n"}],
             "rules": []}
    changes = catalogue_diff(published, draft)
    assert [(c.kind, c.entity_id, c.status) for c in changes] == [
        ("products", "a", "changed"), ("products", "gone", "removed"), ("products", "new", "added")]
    assert [(f.path, f.before, f.after) for f in changes[0].changes] == [("promo", "x", "y")]
    assert catalogue_diff(None, draft)[0].status == "added"
    assert entity_changes({"a": 1}, {"a": 1}) == []


def test_nice_axis_steps_and_yuan_labels():
    assert charts._nice_step(30_000) == 10_000  # 0–¥300 in ¥100 steps
    assert charts._nice_step(700) == 200
    assert charts._axis([30_000, 136]) == (0, 30_000, 10_000)
    assert charts.yuan_label(30_000) == "¥300" and charts.yuan_label(136) == "¥1.36"
    assert charts.yuan_label(123_456_789) == "¥123.5万"
    assert charts.yuan_label(-200_000) == "-¥2,000" and charts.yuan_label(-136) == "-¥1.36"


SVG = "{http://www.w3.org/2000/svg}"


def _chart(markup: str) -> ElementTree.Element:
    """The chart as XML: it must be a well-formed <svg> that starts the markup (no prolog, no DOCTYPE)."""
    assert markup.startswith("<svg ")
    return ElementTree.fromstring(str(markup))


def _marks(root: ElementTree.Element, prefix: str) -> list[ElementTree.Element]:
    """The groups matplotlib drew for the artists whose ids start with ``prefix``, in order."""
    return [g for g in root.iter(f"{SVG}g") if g.get("id", "").startswith(prefix)]


def _points(group: ElementTree.Element) -> list[tuple[float, float]]:
    return [(float(use.get("x")), float(use.get("y"))) for use in group.iter(f"{SVG}use")]


def _texts(root: ElementTree.Element) -> list[str]:
    return [text.text or "" for text in root.iter(f"{SVG}text")]


def _tooltip(element: ElementTree.Element) -> str:
    return element.find(f"{SVG}title").text


def test_a_time_series_draws_a_point_per_day_and_series():
    svg = charts.time_series("t", "Title", ["2026-01-01", "2026-01-02", "2026-01-03"], [("earned", [0, 100, 300]), ("modelled", [10, 10, 10])])
    root = _chart(svg)
    assert root.get("role") == "img" and root.get("id") == "t" and root.get("class") == "chart"
    assert root.get("aria-labelledby") == "t-title t-desc" and root.get("viewBox") == "0 0 880 320"
    assert root.get("width") is None and root.get("height") is None  # it scales to its block
    assert "style=" not in svg and "<style" not in svg  # the console's Content-Security-Policy allows no inline CSS
    assert root.find(f"{SVG}title").get("id") == "t-title" and root.find(f"{SVG}title").text == "Title"
    assert root.find(f"{SVG}desc").text.startswith("earned: 2026-01-01 ¥0, 2026-01-02 ¥1, 2026-01-03 ¥3;")
    earned, modelled = _marks(root, "t-series-")
    assert len(_points(earned)) == 3 and len(_points(modelled)) == 3
    assert [_tooltip(use) for use in earned.iter(f"{SVG}use")][2] == "earned 2026-01-03: ¥3"
    texts = _texts(root)
    assert "earned" in texts and "modelled" in texts  # the legend
    assert "¥3" in texts and "01-03" in texts  # the axes: yuan, and the day
    # the highest point (¥3.00) is at the top of the plot, zero at its foot
    ys = [y for _, y in _points(earned)]
    assert min(ys) == ys[2] and ys[0] > ys[2]


def test_charts_on_one_page_share_no_id_and_leave_matplotlib_as_it_was():
    import matplotlib

    first = _chart(charts.time_series("a", "A", ["2026-01-01"], [("earned", [100])]))
    second = _chart(charts.bars("b", "B", ["x"], [("earned", [100])]))
    ids = [[e.get("id") for e in root.iter() if e.get("id")] for root in (first, second)]
    assert len(ids[0]) == len(set(ids[0])) and len(ids[1]) == len(set(ids[1])) and not set(ids[0]) & set(ids[1])
    assert matplotlib.rcParams["svg.fonttype"] == "path"  # the charts' settings held only while they were drawn


def test_charts_drawn_by_threads_at_once_each_keep_their_text_as_text():
    from concurrent.futures import ThreadPoolExecutor

    names = [f"合作方{n}" for n in range(8)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        drawn = list(pool.map(lambda name: charts.bars(f"c-{name[-1]}", "By partner", [name], [("earned", [100])]), names))
    for name, svg in zip(names, drawn):
        assert name in _texts(_chart(svg)) and "style=" not in svg


def test_bars_escape_their_labels():
    svg = charts.bars("b", "By <product>", ["<a>", "b"], [("earned", [100, -50])])
    assert "<a>" not in svg and "&lt;a&gt;" in svg
    root = _chart(svg)
    assert len(_marks(root, "b-bar-")) == 2
    assert "<a>" in _texts(root) and root.find(f"{SVG}title").text == "By <product>"


def test_a_chinese_partner_name_is_text_in_the_chart_and_money_is_in_yuan():
    root = _chart(charts.bars("p", "By partner", ["星云消费金融", "in_house"],
                              [("earned", [30_000, -119_995]), ("modelled", [136, 0])]))
    texts = _texts(root)
    assert "星云消费金融" in texts  # as text, for the page's fonts to draw, not as outlines
    assert "-¥1,200" in texts and "¥1.36" in texts  # each bar's value, the sign before the ¥
    assert "-¥1,500" in texts and "earned" in texts and "modelled" in texts  # the yuan axis and the legend
    bars = _marks(root, "p-bar-")
    assert len(bars) == 4 and _tooltip(bars[1]) == "in_house, earned: -¥1,200"


def test_a_server_without_a_chinese_font_draws_chinese_names_without_a_warning_per_glyph(monkeypatch):
    # As in a slim image: no Chinese font installed. The text stays text for the browser to draw.
    monkeypatch.setattr(charts, "CHINESE_FONTS", ())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        root = _chart(charts.bars("nofont", "By partner", ["星云消费金融"], [("earned", [30_000])]))
    assert "星云消费金融" in _texts(root)
    assert not [w for w in caught if "missing from font" in str(w.message)]


def test_micro_fen_shows_fen_with_two_decimals_rounded_half_up():
    assert _micro_fen(136_080_000) == "136.08"
    assert _micro_fen(5_000) == "0.01" and _micro_fen(4_999) == "0.00" and _micro_fen(-5_000) == "-0.01"
    assert _micro_fen(123_456_789_000) == "123,456.79"


def test_an_interval_chart_draws_each_estimate_with_its_interval_on_one_axis():
    svg = charts.intervals("i", "Estimates", [("IPS", 120, 80, 160), ("<DM>", 100, None, None), ("DR", None, None, None)],
                           reference=("logged policy", 110))
    assert "&lt;DM&gt;" in svg and "<DM>" not in svg
    root = _chart(svg)
    estimates, intervals, (reference,) = (_marks(root, f"i-{kind}") for kind in ("estimate-", "interval-", "reference"))
    assert len(estimates) == 2 and len(intervals) == 1
    texts = _texts(root)
    assert "<DM>" in texts and "no estimate" in texts and "¥1.50" in texts
    assert "estimate and its 95% interval" in texts and "logged policy ¥1.10" in texts  # the legend
    assert _tooltip(estimates[0]) == "IPS: ¥1.20 (95% interval ¥0.80 to ¥1.60)"
    assert _tooltip(reference) == "logged policy: ¥1.10"
    # the interval's ends sit either side of its estimate, on the same axis as the reference
    (x1, _), (x2, _) = _points(intervals[0])
    (ips, _), = _points(estimates[0])
    line = reference.find(f"{SVG}path").get("d").split()
    assert line[0] == "M" and line[1] == line[4]  # a vertical line
    assert x1 < float(line[1]) < ips < x2
    lift = charts.intervals("l", "Lift", [("lift", -250, -900, 400)], label=charts.percent_label)
    assert _tooltip(_marks(_chart(lift), "l-estimate-")[0]) == "lift: -2.5% (95% interval -9% to 4%)"
    assert "lift: -2.5% (95% interval -9% to 4%)" in _chart(lift).find(f"{SVG}desc").text
    assert "0%" in _texts(_chart(lift)) and "-10%" in _texts(_chart(lift))


def test_the_experiment_form_reads_numbers_and_times_with_their_offsets():
    body, errors = forms.experiment_body({
        "experiment_id": " pin-card ", "page": "home", "treatment_version": "2", "traffic_bps": "10000",
        "treatment_bps": "5000", "starts_at": "2026-03-01T09:00:00+08:00", "ends_at": "2026-03-08T01:00:00Z",
    })
    assert errors == {}
    assert body["experiment_id"] == "pin-card" and body["treatment_version"] == 2 and body["traffic_bps"] == 10_000
    assert body["starts_at"].utcoffset().total_seconds() == 8 * 3600 and body["ends_at"].tzinfo is not None
    _, errors = forms.experiment_body({"traffic_bps": "1万", "treatment_version": "v2", "starts_at": "2026-03-01 09:00"})
    assert set(errors) == {"traffic_bps", "treatment_bps", "treatment_version", "starts_at", "ends_at"}
    assert errors["starts_at"] == ["add the time zone offset, e.g. +08:00 or Z"]
    assert errors["ends_at"] == ["enter a date and time, e.g. 2026-01-01T00:00:00+08:00"]


def test_the_evaluation_form_reads_its_dates():
    asked, errors = forms.evaluation_request({"candidate": "3", "from": "2026-03-01", "to": "", "view": "platform"})
    assert errors == {} and asked == {"candidate": "3", "first": date(2026, 3, 1), "last": None, "view": "platform"}
    _, errors = forms.evaluation_request({"candidate": "draft", "from": "March", "to": "2026-02-30"})
    assert errors == {"from": ["enter a date as YYYY-MM-DD"], "to": ["enter a date as YYYY-MM-DD"]}


def test_service_errors_of_an_experiment_go_next_to_their_fields():
    field_errors, general = forms.route_errors(forms.EXPERIMENT_FORM, {
        "page": ["experiment a already runs on page home"], "salt": ["must be a non-empty string"],
        "_schema": ["the experiment cannot run as asked"],
    }, None)
    assert field_errors == {"page": ["experiment a already runs on page home"]}
    assert general == [("salt", "must be a non-empty string"), ("", "the experiment cannot run as asked")]
    chosen = forms.with_choices(forms.EXPERIMENT_FORM, {"page": ["home", "loans"]})
    assert chosen.field("page").choices == ("home", "loans") and forms.EXPERIMENT_FORM.field("page").choices == ()
