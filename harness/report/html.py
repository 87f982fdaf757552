"""The report's index.html: one self-contained page, readable offline.

Images and downloads are relative links into the report directory; the CSS is inline
and there is no JavaScript, so the directory can be zipped, mailed or opened from a
cluster's file system as it is.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.7em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; }
th { background: #f2f2f2; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption, .note { color: #555; font-size: .92em; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: .85em; }
details { margin: .4em 0; } summary { cursor: pointer; }
"""


@dataclass
class FigureEntry:
    title: str
    caption: str
    png: str  # paths relative to the report directory
    pdf: str


@dataclass
class TableEntry:
    title: str
    caption: str
    blocks: list[tuple[str, pd.DataFrame]]  # (subtitle, string-valued frame)
    numeric: Sequence[str] = ()
    links: list[tuple[str, str]] = field(default_factory=list)  # (label, relative path)


@dataclass
class ConfigEntry:
    algorithm: str
    space: str
    preset: str
    config_key: str
    seeds: list[int]
    epochs: list[int]
    final_epoch: int
    methods: list[str]
    settings: dict[str, Any]
    platform: str = ""  # CPU kernels and torch build of its runs ("" when not recorded)


def frame_to_html(frame: pd.DataFrame, numeric: Sequence[str] = ()) -> str:
    """An HTML table straight from a string-valued DataFrame (cells escaped)."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = "".join(
            f'<td class="num">{html.escape(str(v))}</td>'
            if c in numeric
            else f"<td>{html.escape(str(v))}</td>"
            for c, v in zip(frame.columns, row, strict=True)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _link(label: str, path: str) -> str:
    return f'<a href="{html.escape(path, quote=True)}">{html.escape(label)}</a>'


def _span(values: list[int]) -> str:
    if not values:
        return "—"
    if len(values) > 2 and values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}–{values[-1]}"
    return ", ".join(str(v) for v in values)


def _pixels(settings: dict[str, Any]) -> str:
    source = settings.get("config", {}).get("data", {}).get("source")
    if source == "torchvision":
        return "official files (torchvision)"
    if source == "folder":
        return "image folder: not the official pixels"
    return "—"


def _split(settings: dict[str, Any]) -> str:
    data = settings.get("config", {}).get("data", {})
    if data.get("split_file"):
        return f"split file {data['split_file']}"
    if "split_seed" in data:
        return f"seeded (split_seed {data['split_seed']})"
    return "—"


def _provenance(configs: list[ConfigEntry]) -> str:
    rows = pd.DataFrame(
        [
            {
                "algorithm": c.algorithm,
                "space": c.space,
                "preset": c.preset,
                "config key": c.config_key,
                "CIFAR-10 pixels": _pixels(c.settings),
                "search split": _split(c.settings),
                "platform": c.platform or "not recorded",
                "seeds": _span(c.seeds),
                "checkpoint epochs": _span(c.epochs),
                "final epoch": str(c.final_epoch),
                "methods": ", ".join(c.methods),
            }  # fmt: skip
            for c in configs
        ]
    )
    parts = [frame_to_html(rows)]
    for c in configs:
        settings = html.escape(json.dumps(c.settings, indent=2, sort_keys=True, default=str))
        parts.append(
            f"<details><summary>settings of {html.escape(c.algorithm)} "
            f"(config {html.escape(c.config_key)}, first seed)</summary><pre>{settings}</pre>"
            "</details>"
        )
    return "\n".join(parts)


def render_index(
    title: str,
    generated: str,
    configs: list[ConfigEntry],
    figures: list[FigureEntry],
    tables: list[TableEntry],
    notes: Sequence[str] = (),
) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">Generated {html.escape(generated)} by <code>harness report</code> '
        "from records.parquet, selections.parquet and runs.parquet. Accuracies are "
        "NAS-Bench-201 ground truth (%), 200-epoch fidelity; bands and ± are one sample "
        "standard deviation over seeds.</p>",
        *(f'<p class="note">{html.escape(n)}</p>' for n in notes),
        "<h2>What produced it</h2>",
        _provenance(configs),
    ]
    if tables:
        out.append("<h2>Tables</h2>")
    for table in tables:
        out.append(f"<h3>{html.escape(table.title)}</h3>")
        out.append(f'<p class="note">{html.escape(table.caption)}</p>')
        for subtitle, frame in table.blocks:
            if subtitle:
                out.append(f"<h4>{html.escape(subtitle)}</h4>")
            out.append(frame_to_html(frame, table.numeric))
        if table.links:
            out.append("<p>Files: " + " · ".join(_link(*link) for link in table.links) + "</p>")
    if figures:
        out.append("<h2>Figures</h2>")
    for figure in figures:
        out += [
            f"<h3>{html.escape(figure.title)}</h3>",
            f'<figure><img src="{html.escape(figure.png, quote=True)}" '
            f'alt="{html.escape(figure.title, quote=True)}">',
            f"<figcaption>{html.escape(figure.caption)} "
            f"({_link('PDF', figure.pdf)}, {_link('PNG', figure.png)})</figcaption></figure>",
        ]
    out.append("</body></html>")
    return "\n".join(out) + "\n"
