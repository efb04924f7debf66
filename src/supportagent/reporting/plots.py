"""The `dvc plots` page: its data files, its offline HTML template, and a headless-Chromium check that it draws.

The plot definitions live in dvc.yaml (top-level `plots:`) and their Vega-Lite templates in `.dvc/plots/`.
`dvc plots show` fills `.dvc/plots/page.html`, which carries vega, vega-lite and vega-embed inline (see
`VEGA` and `build_page`), so the page needs no network.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd

from ..config import METHODS, SYSTEMS
from ..evaluation.metrics import QUALITY

PAGE = Path(".dvc/plots/page.html")
# npm packages inlined into PAGE (`make vendor-vega` rebuilds it); the majors DVC's own templates target
VEGA = {"vega": "5.33.1", "vega-lite": "5.23.0", "vega-embed": "6.29.0"}
SCRIPTS_MARK = "<!-- vega scripts -->"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=20000"]


def write_plot_data(evals: dict, trains: dict, log_dirs: dict[str, Path], out: Path,
                    real_flags: dict | None = None) -> None:
    """Long-format CSVs behind the top-level plots of dvc.yaml: quality, latency, size vs quality, each output
    check's flag rate per system before the guard (and on the brands' real replies, `real_flags`), and the
    loss curves of both methods (their DVCLive logs, `log_dirs`: method -> folder) against epochs (their batch
    sizes differ, so optimizer steps do not compare). A resumed run logs again the steps after its checkpoint:
    the later value of a step is kept."""
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{"system": s, "metric": q, "value": evals[s][q]} for s in SYSTEMS for q in QUALITY]).to_csv(
        out / "quality.csv", index=False)
    pd.DataFrame(
        [
            {"system": s, "latency_p50_ms": evals[s]["latency_p50_ms"], "latency_p95_ms": evals[s]["latency_p95_ms"]}
            for s in SYSTEMS
        ]
    ).to_csv(out / "latency.csv", index=False)
    pd.DataFrame([{"system": s, "adapter_mb": evals[s]["adapter_mb"], "rouge_l": evals[s]["rouge_l"]}
                  for s in SYSTEMS]).to_csv(out / "size_vs_quality.csv", index=False)
    rates = {s: evals[s].get("flag_rate", {}) for s in SYSTEMS} | ({"real_replies": real_flags} if real_flags else {})
    pd.DataFrame([{"system": s, "check": c, "rate": v} for s, r in rates.items() for c, v in r.items() if c != "empty"],
                 columns=["system", "check", "rate"]).to_csv(out / "flags.csv", index=False)
    from ..model.trainlog import log_file  # here, not at the top: it imports transformers (`make plots` never does)

    for name, metric in (("loss.csv", "train/loss"), ("val_loss.csv", "eval/loss")):
        frames = []
        for m in METHODS:
            f = log_file(log_dirs[m], metric)
            df = pd.read_csv(f, sep="\t") if f.exists() else pd.DataFrame(columns=["step", "loss"])
            df = df.drop_duplicates("step", keep="last").sort_values("step")
            per_step = trains[m]["epochs"] / max(trains[m]["steps"], 1)
            frames.append(pd.DataFrame({"method": m, "epoch": (df["step"] * per_step).round(4), "loss": df["loss"]}))
        pd.concat(frames).to_csv(out / name, index=False)


# ---- the offline page -------------------------------------------------------------------------------------

def build_page(source: str, scripts: dict[str, str]) -> str:
    """The HTML template with each package's minified build inline where `SCRIPTS_MARK` stands.
    `scripts`: package name -> JavaScript text. Each block names its package, version and sha256."""
    if SCRIPTS_MARK not in source:
        raise ValueError(f"the page source has no {SCRIPTS_MARK}")
    blocks = []
    for name, js in scripts.items():
        if "</script" in js or any(f"{{{p}}}" in js for p in ("plot_divs", "scripts", "refresh_tag")):
            raise ValueError(f"{name}'s build holds text that would end the script or that DVC replaces")
        digest = hashlib.sha256(js.encode()).hexdigest()
        blocks.append(f'<script data-package="{name}@{VEGA[name]}" data-sha256="{digest}">\n{js}\n</script>')
    return source.replace(SCRIPTS_MARK, "\n".join(blocks))


_VENDORED = re.compile(r'<script data-package="([^"]+)" data-sha256="([0-9a-f]+)">\n(.*?)\n</script>', re.S)


def without_scripts(html: str) -> str:
    """The page with its vendored script blocks replaced by `SCRIPTS_MARK` (what `build_page` fills)."""
    blocks = list(_VENDORED.finditer(html))
    if not blocks:
        return html
    return html[:blocks[0].start()] + SCRIPTS_MARK + html[blocks[-1].end():]


def inline_scripts(html: str) -> list[tuple[str, str, str]]:
    """(package@version, recorded sha256, sha256 of the inline text) of each vendored script of a page."""
    found = _VENDORED.findall(html)
    return [(pkg, digest, hashlib.sha256(js.encode()).hexdigest()) for pkg, digest, js in found]


class _Resources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.remote: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href"):
            url = a.get(key) or ""
            if tag in ("script", "link", "img", "iframe") and re.match(r"(https?:)?//", url):
                self.remote.append(f"<{tag} {key}={url}>")

    def handle_data(self, data):
        self.remote += [f"@import {u}" for u in re.findall(r"@import\s+(?:url\()?['\"]?((?:https?:)?//[^'\")]+)", data)]


def remote_resources(html: str) -> list[str]:
    """Every script, stylesheet, image or frame a page would fetch from the network."""
    parser = _Resources()
    parser.feed(html)
    return parser.remote


# ---- rendering in a real browser --------------------------------------------------------------------------

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Marks(HTMLParser):
    """Counts, per plot container (a div with an id directly holding a vega-embed), the drawn data marks:
    SVG items inside groups of role `mark` whose geometry is not empty."""

    def __init__(self):
        super().__init__()
        self.stack: list[tuple[str, str | None, bool]] = []  # (tag, plot id, inside a data-mark group)
        self.marks: dict[str, int] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        plot, in_mark = (self.stack[-1][1], self.stack[-1][2]) if self.stack else (None, False)
        if tag == "div" and a.get("id") and plot is None:
            plot = a["id"]
            self.marks.setdefault(plot, 0)
        cls = (a.get("class") or "").split()
        if tag == "g" and "role-mark" in cls:
            in_mark = True
        elif plot and in_mark and tag in ("path", "rect", "circle", "line", "text"):
            drawn = a.get("d") not in (None, "", "M0,0") if tag == "path" else True
            self.marks[plot] += drawn
        if tag not in _VOID:
            self.stack.append((tag, plot, in_mark))

    def handle_startendtag(self, tag, attrs):  # <path d="..."/>: counted, nothing to close
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        if any(t == tag for t, _, _ in self.stack):
            while self.stack.pop()[0] != tag:
                pass


def drawn_marks(dom: str) -> dict[str, int]:
    """Plot id -> number of drawn data marks in a rendered (JavaScript-executed) page."""
    parser = _Marks()
    parser.feed(dom)
    return {k: v for k, v in parser.marks.items() if k}


def chromium() -> str | None:
    """The system Chromium (Debian's `chromium` package); SUPPORTAGENT_CHROMIUM overrides."""
    return os.environ.get("SUPPORTAGENT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def render(page: Path, png: Path | None = None, width: int = 1280, height: int = 1600) -> str:
    """Run the page's JavaScript in headless Chromium; return the rendered DOM, and save a screenshot to `png`.
    Raises RuntimeError when no Chromium is installed (`apt-get install chromium`)."""
    browser = chromium()
    if browser is None:
        raise RuntimeError("no Chromium found: install Debian's `chromium` package (apt-get install chromium) "
                           "or set SUPPORTAGENT_CHROMIUM to a Chromium binary")
    url = Path(page).resolve().as_uri()
    with tempfile.TemporaryDirectory() as profile:
        base = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]
        dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout
        if png is not None:
            Path(png).parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([*base, f"--screenshot={Path(png).resolve()}", url], capture_output=True, timeout=120,
                           check=True)
    return dom


def check_page(out: Path, png: Path | None = None, diff: list[str] | None = None) -> dict[str, int]:
    """`dvc plots show` (or `dvc plots diff REV...`) into `out`, then the page rendered in headless Chromium: it
    must load nothing from the network and every plot must draw marks (returned per plot); screenshot to `png`."""
    dvc = Path(sys.executable).parent / "dvc"
    cmd = [str(dvc) if dvc.exists() else "dvc", "plots", *(["diff", *diff] if diff else ["show"]), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:])} failed: {proc.stderr.strip()[-1500:]}")
    page = out / "index.html"
    remote = remote_resources(page.read_text())
    if remote:
        raise RuntimeError(f"{page} loads from the network: {remote[:3]} (is plots.html_template set in .dvc/config?)")
    marks = drawn_marks(render(page, png))
    blank = [p for p, n in marks.items() if n == 0]
    if blank or not marks:
        raise RuntimeError(f"blank plots in {page}: {blank or 'all'}")
    return marks


def vendor(packages: Path) -> None:
    """Replace the scripts inlined in PAGE with the builds of npm packages unpacked under `packages`
    (vega/, vega-lite/, vega-embed/ at the versions of VEGA)."""
    import json

    scripts = {}
    for name, version in VEGA.items():
        meta = json.loads((packages / name / "package.json").read_text())
        if meta["version"] != version:
            raise ValueError(f"{packages / name} is {name}@{meta['version']}, expected {version} (plots.VEGA)")
        scripts[name] = (packages / name / "build" / f"{name}.min.js").read_text(encoding="utf-8")
    PAGE.write_text(build_page(without_scripts(PAGE.read_text()), scripts))
