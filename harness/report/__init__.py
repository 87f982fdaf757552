"""``harness report``: figures, tables and an HTML page from the tables of ``harness run``.

Reads ``records.parquet``, ``selections.parquet``, ``runs.parquet`` and
``mixing_weights.parquet`` of a results directory and writes, under the output directory::

    figures/degeneration.{png,pdf}      selected cell's test accuracy vs supernet epoch
    figures/collapse.{png,pdf}          parameter-free / skip_connect ops vs epoch
    figures/rank_correlation.{png,pdf}  Kendall tau / Spearman rho of scores vs ground truth
    figures/alphas.{png,pdf}            softmax(alpha) of every op on every edge vs epoch
    tables/paper_table.{md,tex}         final-epoch accuracy with bootstrap intervals, paired
                                        differences, Holm-corrected p-values, collapsed and
                                        disconnected counts, costs, published numbers
    tables/rank_correlations.md         tau / rho per method at the final epoch
    tables/ostr_ablation.md             OStr variants side by side (when several ran)
    index.html                          everything above on one offline page
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from harness.errors import HarnessError
from harness.report import curves, genotypes
from harness.report.correlations import (
    ALPHAS_LABEL,
    CORRELATION_CAPTION,
    CORRELATION_NUMERIC,
    correlation_display,
    correlation_markdown,
    correlations_by_epoch,
    final_epoch_correlations,
    row_correlations,
)
from harness.report.html import ConfigEntry, FigureEntry, TableEntry, render_index
from harness.report.load import ResultTables, load_results, select_results, settings_of
from harness.report.markup import latex_table, markdown_table
from harness.report.tables import (
    NUMERIC_COLUMNS,
    TABLE_FIDELITY,
    TABLE_METRIC,
    display_table,
    method_sort_key,
    paper_table,
)
from harness.store import atomic_write_bytes

__all__ = ["ReportSummary", "build_report", "format_table_for_terminal"]

log = logging.getLogger(__name__)

TITLE = "Architecture selection on NAS-Bench-201"
ABLATION_TITLE = "OStr: criterion as described; every other choice the harness's"
ABLATION_CAPTION = (
    "What is known here of OStr-DARTS (its abstract and figure captions; the full paper was "
    "not reachable) fixes only the criterion: the strength of an op is the change of the "
    "final loss when it replaces the mixed edge, decided edge by edge. The treatment of none, "
    "the edge order, the batches, the BatchNorm mode and the rest are the harness's choices, "
    "not the paper's, and each row changes one: edge order (independent, greedy), scoring "
    "split (train), BatchNorm mode (eval), whether none competes (no-none), a first-order "
    "Taylor estimate instead of exact replacement, and replacement=kept-weight (op k kept at "
    "its trained weight with the edge's other ops removed, instead of at weight one). "
    "Columns as in the paper table."
)
PAPER_CAPTION = (
    "Test accuracy (%) of the selected cell (NAS-Bench-201 ground truth, 200-epoch fidelity) "
    "at each run's final supernet epoch: mean ± sample std over seeds, then in brackets the "
    "95 % confidence interval of the mean, a percentile bootstrap over seeds (10,000 "
    "resamples, fixed seed 0; none from a single seed), clipped to [0, 100]. Against "
    "magnitude on the same supernets, paired over the seeds both have, on CIFAR-10 test "
    "accuracy: diff is the mean of (method - magnitude) in points with its 95 % paired "
    "percentile-bootstrap interval (seeds resampled with both values); d_z is the paired "
    "Cohen's effect size mean(diff) / sd(diff) (n/a below 2 seeds or when every difference "
    "is equal); p is the raw two-sided p-value of the named test (exact sign-flip "
    "permutation test for up to 10 seeds, Wilcoxon signed-rank beyond) and p Holm the same "
    "p after Holm–Bonferroni correction over the methods compared with magnitude in the "
    "block. collapsed seeds: on how many of its seeds magnitude's final cell has at least 4 "
    "parameter-free ops of 6 (none, skip_connect, avg_pool_3x3); C10 on collapsed seeds: each "
    "method's CIFAR-10 mean [95 % bootstrap CI] on exactly those seeds (n: when it has fewer "
    "of them). disconnected cells: on how many seeds the method's final cell never passes its "
    "input to its output (every path runs through none; the benchmark scores it at chance, "
    "10 % on CIFAR-10). Published numbers are shown beside ours with their source. Selection "
    "cost is the mean per selection over all checkpoints; search cost is the mean supernet "
    "training time per run."
)


@dataclass
class ReportSummary:
    out_dir: Path
    figures: list[Path]
    tables: list[Path]
    index_html: Path
    paper_table_markdown: str
    rank_correlations_markdown: str
    algorithms: list[str] = field(default_factory=list)
    config_keys: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        return [*self.figures, *self.tables, self.index_html]


def format_table_for_terminal(summary: ReportSummary) -> str:
    """What ``harness report --table`` prints: the Markdown paper table."""
    return summary.paper_table_markdown


def build_report(
    results_dir: Path,
    out_dir: Path,
    preset: str | None = None,
    algorithm: str | None = None,
    config_key: str | None = None,
    space: str | None = None,
) -> ReportSummary:
    out_dir = Path(out_dir)
    tables = select_results(
        load_results(Path(results_dir)), preset, algorithm, config_key, space
    )
    # Spaces judged by retraining get their own section; the rest is NAS-Bench-201's.
    retrained_rows = genotypes.is_retrain_fidelity(tables.records["fidelity"])
    retrained = dataclasses.replace(tables, records=tables.records[retrained_rows])
    tables = dataclasses.replace(tables, records=tables.records[~retrained_rows])
    records = tables.records
    figures_dir, tables_dir = out_dir / "figures", out_dir / "tables"
    if not ((records["fidelity"] == TABLE_FIDELITY) & (records["metric"] == TABLE_METRIC)).any():
        if retrained.records.empty:
            raise HarnessError(
                f"the results in {results_dir} hold no {TABLE_METRIC} accuracies at fidelity "
                f"{TABLE_FIDELITY}: re-run `harness run` with the NAS-Bench-201 ground truth"
            )
        return _retrained_report(retrained, out_dir)
    genotype_section = _genotype_section(retrained, out_dir) if len(retrained.records) else None
    configs = _configs(tables)
    colors = curves.method_colors([*tables.records["method"].unique(), ALPHAS_LABEL])

    figure_entries = []
    figure_files = curves.write_degeneration_figure(tables.records, figures_dir, colors)
    figure_entries.append(_figure(
        "Degeneration curves", figure_files,
        "Ground-truth test accuracy of the cell each method selects from each supernet "
        "checkpoint: thin lines one seed each, thick lines the mean over seeds, bands the 95 % "
        "percentile-bootstrap confidence interval of that mean (10,000 resamples, within "
        "[0, 100]); the dashed line is the oracle (best cell, an upper bound).",
    ))  # fmt: skip
    collapse = curves.write_collapse_figure(tables.records, figures_dir, colors)
    figure_files += collapse
    figure_entries.append(_figure(
        "Collapse signature", collapse,
        "Number of parameter-free ops (none, skip_connect, avg_pool_3x3) and of skip_connect "
        "in the selected cell, mean over seeds with the 95 % percentile-bootstrap confidence "
        "interval of the mean (within [0, 6]); a rising count is the DARTS collapse.",
    ))  # fmt: skip

    if not tables.mixing.empty:
        alphas = curves.write_alpha_figure(tables.mixing, figures_dir)
        figure_files += alphas
        figure_entries.append(_figure(
            "Alpha trajectories", alphas,
            "softmax(alpha) of every op on every edge after each supernet epoch, as each "
            "run's metrics.csv recorded it (mean over seeds, band the 95 % percentile-bootstrap "
            "confidence interval of the mean, within [0, 1]): skip_connect taking "
            "over is the DARTS collapse.",
        ))  # fmt: skip

    per_row = row_correlations(tables.selections)
    by_epoch = correlations_by_epoch(per_row)
    if not by_epoch.empty:
        correlation = curves.write_correlation_figure(by_epoch, figures_dir, colors)
        figure_files += correlation
        figure_entries.append(
            _figure("Rank correlation vs epoch", correlation, CORRELATION_CAPTION)
        )

    if genotype_section:
        figure_entries += genotype_section.figure_entries
    numeric = paper_table(tables.records, tables.selections, tables.runs)
    display = display_table(numeric)
    blocks = [(_block_title(c), display[display["algorithm"] == c.algorithm]) for c in configs]
    blocks = [(t, f.drop(columns="algorithm").reset_index(drop=True)) for t, f in blocks]
    paper_md = _blocks_markdown(f"{TITLE}: test accuracy at the final epoch", PAPER_CAPTION, blocks)
    paper_tex = latex_table(blocks, PAPER_CAPTION, "tab:nb201-selection", NUMERIC_COLUMNS)
    correlations = correlation_display(final_epoch_correlations(per_row))
    correlations_md = correlation_markdown(correlations, TITLE)

    # OStr's open choices side by side, when more than one variant ran.
    ablation = [(t, f[f["method"].str.match(r"ostr(\[|$)")]) for t, f in blocks]
    ablation = [(t, f.reset_index(drop=True)) for t, f in ablation if len(f) > 1]
    outputs = [
        ("paper_table.md", paper_md),
        ("paper_table.tex", paper_tex),
        ("rank_correlations.md", correlations_md),
    ]
    if ablation:
        outputs.append(
            ("ostr_ablation.md", _blocks_markdown(ABLATION_TITLE, ABLATION_CAPTION, ablation))
        )
    table_files = [_write_text(tables_dir / name, text) for name, text in outputs]
    ablation_entries = [
        TableEntry(ABLATION_TITLE, ABLATION_CAPTION,
                   ablation, NUMERIC_COLUMNS, [("Markdown", "tables/ostr_ablation.md")])
    ] if ablation else []  # fmt: skip

    page = render_index(
        TITLE,
        datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        configs,
        figure_entries,
        [
            TableEntry(
                "Paper table",
                PAPER_CAPTION,
                blocks,
                NUMERIC_COLUMNS,
                [("Markdown", "tables/paper_table.md"), ("LaTeX", "tables/paper_table.tex")],
            ),
            TableEntry(
                "Rank correlations at the final epoch",
                CORRELATION_CAPTION,
                [("", correlations)],
                CORRELATION_NUMERIC,
                [("Markdown", "tables/rank_correlations.md")],
            ),
            *ablation_entries,
            *([genotype_section.table] if genotype_section else []),
        ],
        notes=platform_note(tables.runs),
    )
    if genotype_section:
        figure_files += genotype_section.figures
        table_files.append(genotype_section.markdown_path)
    index = _write_text(out_dir / "index.html", page)
    return ReportSummary(
        out_dir=out_dir,
        figures=figure_files,
        tables=table_files,
        index_html=index,
        paper_table_markdown=paper_md,
        rank_correlations_markdown=correlations_md,
        algorithms=[c.algorithm for c in configs],
        config_keys=[c.config_key for c in configs],
    )


@dataclass
class GenotypeSection:
    table: TableEntry
    figure_entries: list[FigureEntry]
    figures: list[Path]
    markdown: str
    markdown_path: Path


def _genotype_section(tables: ResultTables, out_dir: Path) -> GenotypeSection:
    table = genotypes.genotype_table(tables.records, tables.runs)
    diagrams = genotypes.write_diagrams(table, out_dir / "figures")
    shown = genotypes.display(table)
    title = "Retrained cells (spaces without tabular ground truth)"
    markdown = "\n".join([f"# {title}\n", genotypes.CAPTION + "\n", markdown_table(shown, ())])
    path = _write_text(out_dir / "tables" / "genotypes.md", markdown)
    entries = [
        _figure(f"Cell: {group.iloc[0]['method']} on {group.iloc[0]['space']}, seed "
                f"{group.iloc[0]['seed']}", diagrams[arch], arch)
        for arch, group in table.groupby("arch", sort=False)
    ]  # fmt: skip
    return GenotypeSection(
        TableEntry(title, genotypes.CAPTION, [("", shown)], (),
                   [("Markdown", "tables/genotypes.md")]),
        entries, [f for files in diagrams.values() for f in files], markdown, path,
    )  # fmt: skip


def _retrained_report(tables: ResultTables, out_dir: Path) -> ReportSummary:
    """The report of results that hold only spaces judged by retraining."""
    section = _genotype_section(tables, out_dir)
    configs = _configs(tables)
    page = render_index(
        "Architecture selection in the DARTS space",
        datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        configs, section.figure_entries, [section.table], notes=platform_note(tables.runs),
    )  # fmt: skip
    return ReportSummary(
        out_dir=out_dir, figures=section.figures, tables=[section.markdown_path],
        index_html=_write_text(out_dir / "index.html", page),
        paper_table_markdown=section.markdown, rank_correlations_markdown="",
        algorithms=[c.algorithm for c in configs], config_keys=[c.config_key for c in configs],
    )  # fmt: skip


def _write_text(path: Path, text: str) -> Path:
    atomic_write_bytes(path, text.encode("utf-8"))
    log.info("wrote %s", path)
    return path


def _figure(title: str, files: list[Path], caption: str) -> FigureEntry:
    png, pdf = (f"figures/{p.name}" for p in files)
    return FigureEntry(title, caption, png, pdf)


def _configs(tables: ResultTables) -> list[ConfigEntry]:
    out = []
    for (algorithm, key), rows in tables.records.groupby(["algorithm", "config_key"]):
        methods = rows.drop_duplicates("method")
        out.append(ConfigEntry(
            algorithm=str(algorithm),
            space=str(rows["space"].iloc[0]),
            preset=", ".join(sorted(rows["preset"].astype(str).unique())),
            config_key=str(key),
            seeds=sorted(int(s) for s in rows["seed"].unique()),
            epochs=sorted(int(e) for e in rows["epoch"].unique()),
            final_epoch=int(rows["final_epoch"].max()),
            methods=sorted(methods["method"], key=method_sort_key),
            settings=settings_of(tables.runs, str(key)),
            platform="; ".join(platforms(tables.runs[tables.runs["config_key"] == key])),
        ))  # fmt: skip
    return out


def platforms(runs: pd.DataFrame) -> list[str]:
    """The distinct platforms (CPU kernels, torch build) the given runs trained on."""
    if "platform" not in runs.columns:
        return []
    found = {p for raw in runs["platform"].dropna().astype(str) for p in raw.split("; ") if p}
    return sorted(found)


def platform_note(runs: pd.DataFrame) -> list[str]:
    found = platforms(runs)
    if len(found) < 2:
        return []
    return [
        f"The runs compared here trained on different platforms ({' / '.join(found)}). CPU "
        "results are bit-identical only for the same settings, seed, thread count and "
        "platform; across platforms expect the same statistics, not the same numbers."
    ]


def _block_title(config: ConfigEntry) -> str:
    # The space is named when it is not NAS-Bench-201 itself (titles before spaces existed).
    space = f" on {config.space}" if config.space != "nb201" else ""
    return (
        f"{config.algorithm}{space} — preset {config.preset}, config {config.config_key}, "
        f"{len(config.seeds)} seeds, final epoch {config.final_epoch}"
    )


def _blocks_markdown(heading: str, caption: str, blocks: list[tuple[str, pd.DataFrame]]) -> str:
    parts = [f"# {heading}\n", caption + "\n"]
    for title, frame in blocks:
        parts += [f"## {title}\n", markdown_table(frame, NUMERIC_COLUMNS)]
    return "\n".join(parts)
