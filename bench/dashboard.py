"""`python -m bench.dashboard`: the benchmark, scraped by a real Prometheus, and a picture of
docs/grafana-dashboard.json's queries over what it scraped.

Grafana itself is not used (it is not packaged for Debian): this runs every query of every
panel of the dashboard against Prometheus's HTTP API, over the benchmark's time, and draws
each panel's series as Grafana would lay them out, in a page that Chromium renders to a
PNG. The queries are the dashboard's, the figures Prometheus's; the drawing is this script's.

    python -m bench.dashboard --out docs/dashboard.png       # needs Debian's prometheus and chromium
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.scenarios import SCENARIOS, Fanout, run_fanout, run_history, run_idle
from bench.server import ROOT, Server, chatroom, free_port, terminate

DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
SCRAPE_INTERVAL = 1  # seconds: the benchmark's scenarios last seconds each
RATE_WINDOW = "4s"  # what $__rate_interval comes to at that interval (four scrapes)
COLOURS = ["#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9", "#705da0", "#508642"]
CHROMIUM = "/usr/bin/chromium"


@contextlib.contextmanager
def prometheus(target: str, cafile: Path, workdir: Path) -> Iterator[str]:
    """A Prometheus that scrapes `target`'s /metrics over TLS every second; its URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise SystemExit("needs Prometheus: apt-get install prometheus")
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n"
        f"  scrape_interval: {SCRAPE_INTERVAL}s\n"
        "scrape_configs:\n"
        "  - job_name: chatroom\n"
        "    scheme: https\n"
        f"    tls_config: {{ca_file: {cafile}}}\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n"
    )
    port = free_port()
    command = [
        binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]  # fmt: skip
    log = (workdir / "prometheus.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{url}/-/ready", timeout=1).close()  # noqa: S310
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"Prometheus did not start: {(workdir / 'prometheus.log').read_text()}")
        yield url
    finally:
        terminate(process)
        log.close()


def query_range(url: str, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": SCRAPE_INTERVAL})
    with urllib.request.urlopen(f"{url}/api/v1/query_range?{query}", timeout=30) as answer:  # noqa: S310
        body = json.load(answer)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def as_prometheus(expr: str) -> str:
    """A Grafana expression as Prometheus takes it: every instance, Grafana's rate window."""
    return expr.replace("$__rate_interval", RATE_WINDOW).replace("$instance", ".*")


def legend(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda match: labels.get(match[1], ""), template)


def run_benchmark(server: Server, names: list[str], processes: int) -> list[str]:
    rows = []
    for name in names:
        shape = SCENARIOS[name]
        if isinstance(shape, Fanout):
            row = asyncio.run(run_fanout(server, shape, processes))
        elif name.startswith("idle"):
            row = asyncio.run(run_idle(server, shape, processes))
        else:
            row = asyncio.run(run_history(server, shape))
        shown = (f"{value:.4g}" if isinstance(value, float) else str(value) for value in row.values())
        rows.append(f"{name}: " + "  ".join(f"{key} {value}" for key, value in zip(row, shown, strict=True)))
        print(rows[-1], flush=True)
        time.sleep(3)  # a gap between scenarios, to tell them apart
    return rows


Series = list[tuple[str, list[tuple[float, float]]]]  # a panel's lines: legend, (time, value) each


def render(panels: list[dict[str, Any]], series: list[Series], start: float, end: float, caption: str) -> str:
    """The page: the dashboard's panels in its grid, each series drawn as a line."""
    cells = []
    for panel, lines in zip(panels, series, strict=True):
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        cells.append(_panel(panel["title"], unit, lines, start, end))
    return (
        "<!doctype html><meta charset=utf-8><style>"
        "body{background:#111217;color:#ccccdc;font:12px sans-serif;margin:8px;width:1400px}"
        ".grid{display:grid;grid-template-columns:1fr 1fr;gap:8px}"
        ".panel{background:#181b1f;border:1px solid #2c3235;border-radius:2px;padding:6px 8px}"
        "h2{font-size:13px;margin:0 0 4px;font-weight:500}"
        ".legend span{margin-right:12px;white-space:nowrap}.legend i{display:inline-block;width:12px;height:3px;"
        "margin-right:4px;vertical-align:middle}"
        "h1{font-size:15px;font-weight:500}p{color:#8e8e8e;margin:2px 0 8px}</style>"
        "<h1>chatroom (docs/grafana-dashboard.json), fed by the benchmark</h1>"
        "<p>Every panel's PromQL run against a real Prometheus that scraped /metrics each second; "
        f"drawn by bench/dashboard.py, not by Grafana. {html.escape(caption)}</p>"
        f"<div class=grid>{''.join(cells)}</div>"
    )


def _panel(title: str, unit: str, lines: Series, start: float, end: float) -> str:
    width, height, left, bottom = 660, 190, 56, 18
    points = [point for _, values in lines for point in values]
    top = max((value for _, value in points), default=0.0) or 1.0
    span = max(end - start, 1.0)
    svg = [f'<svg width="{width}" height="{height}" font-size="10" fill="#8e8e8e">']
    for fraction in (0, 0.5, 1):
        y = (height - bottom) * (1 - fraction) + 4
        svg.append(f'<line x1="{left}" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#2c3235"/>')
        svg.append(f'<text x="{left - 4}" y="{y + 3:.1f}" text-anchor="end">{_format(top * fraction, unit)}</text>')
    for second in range(0, int(span) + 1, max(10, int(span) // 8 // 10 * 10)):
        x = left + (width - left) * second / span
        svg.append(f'<text x="{x:.1f}" y="{height - 4}" text-anchor="middle">{second} s</text>')
    for index, (_, values) in enumerate(lines):
        for run in _runs(values):  # a gap in the data (no answer to a query there) stays a gap
            path = " ".join(
                f"{left + (width - left) * (moment - start) / span:.1f},{(height - bottom) * (1 - value / top) + 4:.1f}"
                for moment, value in run
            )
            colour = COLOURS[index % len(COLOURS)]
            svg.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.3" points="{path}"/>')
    svg.append("</svg>")
    keys = "".join(
        f'<span><i style="background:{COLOURS[index % len(COLOURS)]}"></i>{html.escape(name)}</span>'
        for index, (name, _) in enumerate(lines)
    )
    empty = "" if lines else "<span>no data: nothing of the kind happened</span>"
    return f"<div class=panel><h2>{html.escape(title)}</h2>{''.join(svg)}<div class=legend>{keys}{empty}</div></div>"


def _runs(values: list[tuple[float, float]]) -> Iterator[list[tuple[float, float]]]:
    run: list[tuple[float, float]] = []
    for point in values:
        if run and point[0] - run[-1][0] > 1.5 * SCRAPE_INTERVAL:
            yield run
            run = []
        run.append(point)
    if run:
        yield run


def _format(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.3g} ms"
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:.3g}{suffix}{'B' if unit in ('bytes', 'Bps') else ''}"
    return f"{value:.3g}{' B' if unit in ('bytes', 'Bps') else ''}"


def screenshot(page_html: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1416, "height": 900})
        page.set_content(page_html)
        page.screenshot(path=str(out), full_page=True)
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", default=["fanout100", "fanout1000", "fanout50x50", "idle2000"])
    parser.add_argument("--backend", default="sqlite")
    parser.add_argument("--processes", type=int, default=1, help="receiver processes")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    args = parser.parse_args()
    panels = json.loads(DASHBOARD.read_text())["panels"]
    with tempfile.TemporaryDirectory(prefix="chatroom-dashboard-") as folder:
        workdir = Path(folder)
        with chatroom(workdir, args.backend) as server:
            target = urllib.parse.urlsplit(server.url).netloc
            with prometheus(target, server.cafile, workdir) as url:
                time.sleep(3 * SCRAPE_INTERVAL)
                start = time.time()
                rows = run_benchmark(server, args.scenarios, args.processes)
                end = time.time()
                series: list[Series] = []
                for panel in panels:
                    lines = []
                    for target_query in panel["targets"]:
                        for result in query_range(url, as_prometheus(target_query["expr"]), start - 2, end):
                            name = legend(target_query["legendFormat"], result["metric"])
                            values = [(float(moment), float(value)) for moment, value in result["values"]]
                            lines.append((name, [(moment, value) for moment, value in values if value == value]))
                    series.append(lines)
        caption = f"Scenarios, one after the other, 3 s apart: {', '.join(row.split(':')[0] for row in rows)}."
        screenshot(render(panels, series, start - 2, end, caption), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
