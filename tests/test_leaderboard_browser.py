"""The leaderboard HTML page in headless Chromium: it renders the tables, and clicking a header sorts the rows.

How: `chromium --headless --dump-dom` loads the page with a URL fragment and prints the DOM after its scripts ran.
`#click=overall:N` makes the page call `click()` on header N, which fires the same listener as a user's click; the
dumped DOM then shows the row order and the header's `aria-sort`. No DevTools connection, no network.

Run: python -m pytest tests/test_leaderboard_browser.py -q
(needs Debian's `chromium`: apt-get install -y chromium; skipped with a reason when it is not installed)
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from toto_eval.harness.results import TaskResult, write_result
from toto_eval.leaderboard import render
from toto_eval.leaderboard.collect import collect
from toto_eval.leaderboard.tables import build_tables

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
FLAGS += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lb")
    for name, score in (("beta", 0.40), ("alpha", 0.60), ("gamma", 0.50)):
        result = TaskResult(name, "builtin", "imagenet_probe", "1", "ok", "top1", score, {"top1": score})
        write_result(result, root / "results")
    other = TaskResult("delta", "builtin", "toy_probe", "1", "ok", "acc", 0.9, {"acc": 0.9})  # no imagenet_probe
    write_result(other, root / "results")
    tables = build_tables(collect([root / "results"]), reported=False)
    path = root / "leaderboard.html"
    path.write_text(render.html_page(tables))
    return path


def dump(page: Path, fragment: str, tmp_path: Path) -> str:
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", f"{page.as_uri()}#{fragment}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert "<table" in out.stdout, out.stderr[-2000:]
    return out.stdout


def models(dom: str, table: str = "overall") -> list[str]:
    body = re.search(rf'<table id="{table}".*?<tbody>(.*?)</tbody>', dom, re.S).group(1)
    return re.findall(r"<tr[^>]*><td[^>]*>([^<]*)</td>", body)


def header(dom: str, col: int) -> str:
    return re.search(rf'<table id="overall".*?(<th data-col="{col}"[^>]*>)', dom, re.S).group(1)


def test_page_renders_the_tables(page, tmp_path):
    dom = dump(page, "", tmp_path)
    assert models(dom) == ["alpha", "beta", "delta", "gamma"]  # as built: sorted by key
    assert models(dom, "imagenet_probe") == ["alpha", "beta", "gamma"]
    assert "60.0" in dom and 'aria-sort="none"' in dom


def test_clicking_a_header_sorts_and_a_second_click_reverses(page, tmp_path):
    col = 5  # the imagenet_probe column (after model, checkpoint, source, flags, params)
    once = dump(page, f"click=overall:{col}", tmp_path)
    assert models(once) == ["alpha", "gamma", "beta", "delta"]  # numbers sort descending first; missing last
    assert 'aria-sort="descending"' in header(once, col)
    twice = dump(page, f"click=overall:{col},overall:{col}", tmp_path)
    assert models(twice) == ["beta", "gamma", "alpha", "delta"]  # missing stays last
    assert 'aria-sort="ascending"' in header(twice, col)
    by_name = dump(page, "click=overall:0", tmp_path)  # text columns sort ascending first
    assert models(by_name) == ["alpha", "beta", "delta", "gamma"] and 'data-sorted="overall:0:asc"' in by_name
