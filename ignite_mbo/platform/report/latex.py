"""The gain report as LaTeX tables for a paper (``report --format latex``): booktabs tabulars, one per
percentile, and the gains over ``none`` with their interval, p and n; footnotes as a table note."""

from __future__ import annotations

import math

from ignite_mbo.platform.report import stats
from ignite_mbo.platform.report.build import PERCENTILES, Report
from ignite_mbo.platform.report.render import SIGNIFICANT, cell_table, notes

_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
            "±": r"$\pm$", "†": r"$^\dagger$", "‡": r"$^\ddagger$", "—": "--", "−": "$-$", "σ": r"$\sigma$",
            "≥": r"$\geq$", "λ": r"$\lambda$", "ε": r"$\varepsilon$", "α": r"$\alpha$", "·": r"$\cdot$",
            "ρ": r"$\rho$", "‖": r"$\|$", "∇": r"$\nabla$"}


def escape(text: str) -> str:
    """``text`` with LaTeX's special characters (and the report's symbols) escaped."""
    return "".join(_ESCAPES.get(char, char) for char in str(text))


def render_latex(report: Report) -> str:
    """All tables of the report as one LaTeX fragment (needs ``\\usepackage{booktabs}``)."""
    parts = [f"% ignite-mbo gain report; needs \\usepackage{{booktabs}}. n = seeds per cell (at most {report.n_max})."]
    for percentile in PERCENTILES:
        table = cell_table(report, percentile)
        parts += [_tabular(f"{percentile} percentile: mean ± std over seeds (gain over none)",
                           ["baseline + regularizer", *table.columns],
                           [[label, *table.loc[label]] for label in table.index])]
    gains = report.long[(report.long["percentile"] == "100th") & report.long["gain_pct"].notna()]
    if not gains.empty:
        rows = []
        for g in gains.to_dict("records"):
            interval = "—" if math.isnan(g["gain_ci_low"]) else f"{g['gain_ci_low']:+.1f}% .. {g['gain_ci_high']:+.1f}%"
            p = "—" if math.isnan(g["p_value"]) else f"{g['p_value']:.3g}"
            mark = SIGNIFICANT if g["significant"] else ""
            rows.append([g["row"], g["task"], f"{g['gain_pct']:+.1f}%{mark}", interval, p, str(g["paired_n"])])
        parts.append(_tabular(
            f"Gain over none, 100th percentile, paired by seed; {SIGNIFICANT}: {stats.TEST_NAME} p < {stats.ALPHA:g}",
            ["baseline + regularizer", "task", "gain", "95% t-interval", "sign-flip p", "n"], rows))
    parts += ["% Notes:", *(f"% {escape(note)}" for note in notes(report))]
    return "\n\n".join(parts) + "\n"


def _tabular(caption: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{escape(caption)}}}",
             r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
             " & ".join(escape(h) for h in header) + r" \\", r"\midrule",
             *(" & ".join(escape(cell) for cell in row) + r" \\" for row in rows),
             r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)
