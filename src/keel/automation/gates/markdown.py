"""A validation report as Markdown fit for a pull-request comment."""

from __future__ import annotations

from typing import Any

from keel.automation.gates.result import ValidationReport

__all__ = ["to_markdown"]

_ICON = {"pass": "✅ pass", "fail": "❌ fail", "skipped": "⏭️ skipped"}


def _num(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if 0 < abs(value) < 1e-3:  # a 1e-7 probability difference is not 0.0000
            return f"{value:.2e}"
        return f"{value:,.4g}" if abs(value) >= 1000 else f"{value:.4f}"
    return str(value)


def _cell(text: str) -> str:
    # A pipe would end the table cell; a newline would end the row.
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(report: ValidationReport) -> str:
    """Verdict line, the gate table, the decision threshold / cost curve, the slice table."""
    verdict = "✅ **passed**" if report.passed else "❌ **failed**"
    against = f"`{report.champion}`" if report.champion else "no champion"
    lines = [
        f"### keel validation: `{report.challenger}` vs {against}",
        "",
        f"{verdict} — {report.holdout_rows:,} holdout rows, label `{report.label}`"
        + (", strict policy (skipped gates block)" if report.strict else ""),
        "",
        "| gate | result | value | threshold | reason |",
        "|---|---|---|---|---|",
    ]
    for gate in report.gates:
        lines.append(
            f"| {gate.name} | {_ICON[gate.status]} | {_num(gate.value)} | "
            f"{_num(gate.threshold)} | {_cell(gate.reason)} |"
        )
    lines += ["", f"**Decision threshold:** {report.decision_threshold:.4f}"]
    if report.cost:
        cost = report.cost
        lines += [
            "",
            f"Expected-cost rule (R-COST-08): cost_fp = {cost['cost_fp']:g}, "
            f"cost_fn = {cost['cost_fn']:g}; minimum {cost['expected_cost']:.4f} per prediction "
            f"at T = {cost['threshold']:.4f} ({cost['fp']} FP, {cost['fn']} FN) vs "
            f"{cost['expected_cost_at_0.5']:.4f} at 0.5 (saves {cost['saving_vs_0.5']:.4f}).",
            "",
            "<details><summary>cost curve</summary>",
            "",
            "| threshold | expected cost | FP | FN |",
            "|---|---|---|---|",
        ]
        for point in cost["curve"]:
            lines.append(
                f"| {point['threshold']:.2f} | {point['cost']:.4f} "
                f"| {point['fp']} | {point['fn']} |"
            )
        lines += ["", "</details>"]
    if report.slices:
        lines += [
            "",
            "**Slices** (AUC)",
            "",
            "| slice | rows | champion | challenger | Δ | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for row in report.slices:
            lines.append(
                f"| {_cell(row['column'])}={_cell(str(row['value']))} | {row['rows']} | "
                f"{_num(row['champion_auc'])} | {_num(row['challenger_auc'])} | "
                f"{_num(row.get('delta'))} | {row.get('verdict', '')} |"
            )
    lines += _explained(report)
    return "\n".join(lines) + "\n"


def _explained(report: ValidationReport) -> list[str]:
    """The numbers behind the importance, SHAP-direction and runtime gates, one table."""
    rows: list[str] = []
    for gate in report.gates:
        numbers = gate.numbers
        if gate.name == "importance" and "shares" in numbers:
            shares = list(numbers["shares"].items())
            rows += [f"| importance | {_cell(str(k))} | {v:.1%} |" for k, v in shares[:10]]
            rows.append(f"| importance | method | {_cell(str(numbers['method']))} |")
        elif gate.name == "shap_direction" and "features" in numbers:
            for name, item in numbers["features"].items():
                value = item.get("correlation", item.get("slope"))
                rows.append(
                    f"| shap_direction | {_cell(name)} | {item['observed']} "
                    f"(expected {item['expected']}, {_num(value)}) |"
                )
        elif gate.name.startswith("runtime.") and gate.status != "skipped":
            for key, value in numbers.items():
                if key == "libraries":
                    for lib, seen in value.items():
                        text = f"{seen['recorded']} → {seen['installed']} ({seen['verdict']})"
                        rows.append(f"| {gate.name} | {_cell(lib)} | {_cell(text)} |")
                elif key == "cases":
                    for case, seen in value.items():
                        text = (
                            f"{seen['class_changes']}/{seen['rows']} class changes, "
                            f"max Δp {seen['max_proba_diff']:.2e}"
                            if isinstance(seen, dict)
                            else str(seen)
                        )
                        rows.append(f"| {gate.name} | {_cell(case)} | {_cell(text)} |")
                else:
                    rows.append(f"| {gate.name} | {_cell(key)} | {_cell(_num(value))} |")
    if not rows:
        return []
    return ["", "**Explanation and runtime numbers**", "", "| gate | item | value |",
            "|---|---|---|", *rows]  # fmt: skip
