#!/usr/bin/env python3
"""Turns the figures the benches reported (one JSON object a line, see
agent/benches/common) into one table for people and one JSON file.

usage: bench-table.py FIGURES.jsonl RESULTS.json [--seconds N] [--command TEXT]
"""

import argparse
import datetime
import json
import os
import platform
import subprocess


def number(value):
    if value is None:
        return ""
    magnitude = abs(value)
    if magnitude >= 100 or value == int(value):
        return f"{value:.0f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def value_text(figure):
    """median, then p95/p99 and the range when there were several samples."""
    value = figure["value"]
    text = number(value["median"])
    if value["samples"] > 1:
        text += f" (p95 {number(value['p95'])}, p99 {number(value['p99'])}, " \
                f"{number(value['min'])}–{number(value['max'])}, n={value['samples']})"
    return text


def row(figure):
    status = figure.get("status", "measured")
    if status != "measured":
        return [figure["bench"], figure["metric"], status.upper(), "", "", "", "", figure.get("note", "")]
    anchor = figure.get("anchor")
    met = figure.get("met")
    return [
        figure["bench"],
        figure["metric"],
        value_text(figure),
        figure["unit"],
        f"{anchor['name']}: {number(anchor['value']['median'])}" if anchor else "",
        f"{figure['ratio']:.3f}×" if figure.get("ratio") is not None else "",
        (figure.get("goal") or "") + ("" if met is None else ("  met" if met else "  MISSED")),
        figure.get("note", ""),
    ]


def table(rows):
    header = ["bench", "figure", "tfagent (median)", "unit", "anchor (median)", "ratio", "goal", "note"]
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = []
    for index, r in enumerate([header] + rows):
        lines.append("| " + " | ".join(str(c).ljust(widths[i]) for i, c in enumerate(r)) + " |")
        if index == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("figures")
    parser.add_argument("results")
    parser.add_argument("--seconds", type=int, default=0)
    parser.add_argument("--command", default="make bench")
    args = parser.parse_args()

    figures = []
    with open(args.figures, encoding="utf-8") as lines:
        for line in lines:
            line = line.strip()
            if line:
                figures.append(json.loads(line))

    print(table([row(f) for f in figures]))
    print()
    missed = [f for f in figures if f.get("met") is False]
    unmeasured = [f for f in figures if f.get("status", "measured") != "measured"]
    print(f"{len(figures)} figures: {len(missed)} goal(s) missed, {len(unmeasured)} not measured"
          f" (benches never fail on a number); {args.seconds} s in all")

    results = {
        "command": args.command,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": {"kernel": platform.release(), "cpus": os.cpu_count(), "root": os.geteuid() == 0},
        "seconds": args.seconds,
        "figures": figures,
    }
    with open(args.results, "w", encoding="utf-8") as out:
        json.dump(results, out, indent=2, ensure_ascii=False)
        out.write("\n")
    print(f"JSON: {args.results}")


if __name__ == "__main__":
    main()
