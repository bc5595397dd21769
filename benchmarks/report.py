"""Rendering: markdown table and JSON of a benchmark run. Pure formatting."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from .harness import Result, fmt


def _proc_line(path: str, prefix: str) -> str | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(prefix):
                    return line
    except OSError:
        pass
    return None


def machine() -> dict:
    line = _proc_line("/proc/cpuinfo", "model name")
    model = line.split(":", 1)[1].strip() if line else "?"
    line = _proc_line("/proc/meminfo", "MemTotal")
    mem = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB" if line else "?"
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "usable_cpus": sorted(os.sched_getaffinity(0)),
        "memory": mem,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "loadavg_at_start": os.getloadavg(),
    }


def git_commit(path: Path) -> str:
    r = subprocess.run(
        ["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return r.stdout.strip() or "?"


def ratio(sc, key, t, r):
    if isinstance(t, (int, float)) and isinstance(r, (int, float)) and r:
        return f"{t / r:.2f}×"
    return ""


def markdown(results: list[Result], meta: dict) -> str:
    lines = [
        f"Run {meta['date']}, `{meta['command']}`, {meta['reps']} repetitions per target "
        "(alternating), medians.",
        f"Machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, "
        f"{meta['machine']['memory']}, Linux {meta['machine']['kernel']}; hub pinned to CPU "
        f"{meta['hub_cpu']}, load generators to CPU {meta['load_cpus']}; load average "
        f"{meta['machine']['loadavg_at_start'][0]:.1f} at start, "
        f"{meta.get('loadavg_at_end', [0.0])[0]:.1f} at end (the machine is shared).",
        f"Versions: {meta['versions'].get('tantra', 'tantra: not run')}; "
        f"reference {meta['versions'].get('reference', 'not run')}.",
        "",
    ]
    cand = any("candidate" in r.trials for r in results)
    # the physical limit (wsrelay.c), where a scenario runs it: Tantra as a fraction of it
    lim = any("limit" in r.trials for r in results)
    head = ["scenario", "metric", "Tantra"]
    if cand:
        lines[-1:-1] = [f"Candidate: {meta['versions'].get('candidate', '?')}."]
        head += ["candidate", "C/T"]
    head += ["reference", "T/R"]
    if lim:
        head += ["limit", "T/L"]
    head += ["goal"]
    lines += [
        "| " + " | ".join(head) + " |",
        "|---|---|" + "---:|" * (len(head) - 3) + "---|",
    ]
    for res in results:
        if res.scenario.kind == "paths":
            continue  # own table below: variants against their baseline
        sc = res.scenario
        med = {t: res.medians(t) for t in ("tantra", "reference", "candidate", "limit")}
        first = True
        for key, label, better in sc.metrics:
            val = {t: (m.get(key) if t in res.trials else None) for t, m in med.items()}

            def cell(t, val=val, res=res):
                return fmt(val[t]) if val[t] is not None else cell_missing(res, t)

            def rat(a, b, val=val, key=key, better=better, sc=sc):
                return ratio(sc, key, val[a], val[b]) if better is not None else ""

            row = [sc.key if first else "", label, cell("tantra")]
            if cand:
                row += [cell("candidate"), rat("candidate", "tantra")]
            row += [cell("reference"), rat("tantra", "reference")]
            if lim:
                row += [cell("limit") if "limit" in sc.targets else "", rat("tantra", "limit")]
            row += [sc.goal if first else ""]
            lines.append("| " + " | ".join(row) + " |")
            first = False
    if all(res.scenario.kind == "paths" for res in results):
        lines = lines[:-2]  # no comparison with the reference: only the paths table
    lines += paths_markdown([res for res in results if res.scenario.kind == "paths"])
    seen = {}
    for res in results:
        v = res.versions.get("tantra")
        if v:
            seen.setdefault(v, []).append(res.scenario.key)
    if len(seen) > 1:
        lines += ["", "The installed Tantra changed during this run:"]
        lines += [f"- {', '.join(keys)}: {v}" for v, keys in seen.items()]
    errs = []
    for res in results:
        for target in res.variants or ("tantra", "candidate", "reference", "limit"):
            for e in res.errors(target):
                errs.append(f"- {res.scenario.key} / {target}: {e.splitlines()[0][:300]}")
    if errs:
        lines += ["", "Errors:", *errs]
    return "\n".join(lines) + "\n"


def cell_missing(res: Result, target: str) -> str:
    if target in res.skipped:
        return "n/a" if "not installed" not in res.skipped[target] else "not run"
    if res.errors(target):
        return "error"
    if target not in res.scenario.targets and target != "candidate":
        return "n/a"
    return "–"


def to_json(results: list[Result], meta: dict) -> dict:
    return {
        "meta": meta,
        "scenarios": [
            {
                "key": r.scenario.key,
                "title": r.scenario.title,
                "kind": r.scenario.kind,
                "params": r.scenario.params,
                "goal": r.scenario.goal,
                "targets": list(r.scenario.targets),
                "skipped": r.skipped,
                "versions": r.versions,
                "trials": r.trials,
                "medians": {t: r.medians(t) for t in r.trials},
            }
            for r in results
        ],
    }


def write(results: list[Result], meta: dict, outdir: Path) -> tuple[Path, Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    md = markdown(results, meta)
    j = to_json(results, meta)
    mdp = outdir / f"{stamp}-{meta['mode']}.md"
    jp = outdir / f"{stamp}-{meta['mode']}.json"
    mdp.write_text(md)
    jp.write_text(json.dumps(j, indent=1, default=str))
    (outdir / "latest.md").write_text(md)
    (outdir / "latest.json").write_text(json.dumps(j, indent=1, default=str))
    return mdp, jp


def paths_markdown(results: list[Result]) -> list[str]:
    """The new-path scenarios: each variant's medians and its ratio to the baseline
    variant of the same tree (the scenario's first; ``[candidate]`` rows to
    the candidate's own baseline), measured in the same run."""
    if not results:
        return []
    lines = [
        "",
        "New paths (variants of the Tantra hub, alternating; ratio = variant / baseline, "
        "the first variant, in the same run):",
        "",
        "| scenario | metric | variant | median | ratio | goal |",
        "|---|---|---|---:|---:|---|",
    ]
    for res in results:
        sc = res.scenario
        first = True
        if not res.variants:
            why = "; ".join(sorted(set(res.skipped.values()))) or "no trials"
            lines.append(f"| {sc.key} | | | skipped: {why} | | |")
            continue
        for key, label, better in sc.metrics:
            for name in res.variants:
                tree = name.split(" [", 1)[1][:-1] if " [" in name else ""
                base = next(
                    (n for n in res.variants if (n.split(" [", 1)[1][:-1] if " [" in n else "")
                     == tree), name)  # fmt: skip
                v = res.medians(name).get(key)
                b = res.medians(base).get(key)
                cell = fmt(v) if v is not None else ("error" if res.errors(name) else "–")
                rcell = ratio(sc, key, v, b) if (better is not None and name != base) else ""
                lines.append(
                    f"| {sc.key if first else ''} | {label} | {name} | {cell} | {rcell} | "
                    f"{sc.goal if first else ''} |"
                )
                first = False
        for name, why in res.skipped.items():
            lines.append(f"| | | {name} | skipped: {why} | | |")
    return lines
