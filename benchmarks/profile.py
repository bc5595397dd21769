"""Sampling profile of the Tantra hub under benchmark load (py-spy).

Owns: starting/stopping ``py-spy record`` on the hub's pid during the first
Tantra repetition of a scenario, and summarising the collapsed stacks into
self and inclusive time per function. Writes ``<outdir>/profile-<key>.txt``
(summary) and ``.folded`` (raw stacks, for flamegraph tools).
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from . import procs

FRAME_RE = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def find_pyspy() -> str | None:
    cand = Path(sys.executable).parent / "py-spy"
    if cand.exists():
        return str(cand)
    return shutil.which("py-spy")


class Profiler:
    def __init__(self, outdir: Path, rate: int = 250) -> None:
        self.exe = find_pyspy()
        if self.exe is None:
            raise SystemExit("--profile needs py-spy: pip install py-spy")
        self.outdir = outdir
        self.rate = rate
        self.done: list[Path] = []

    def start(self, hub, sc):
        self.outdir.mkdir(parents=True, exist_ok=True)
        folded = self.outdir / f"profile-{sc.key}.folded"
        p = procs.REGISTRY.popen(
            [
                self.exe,
                "record",
                "--pid",
                str(hub.pid),
                "--rate",
                str(self.rate),
                "--format",
                "raw",
                "--output",
                str(folded),
                "--nonblocking",
                # e.g. "--threads" (a root frame per thread: the history writer
                # apart from the reactor) or "--gil" (only samples holding the GIL)
                *os.environ.get("TANTRA_BENCH_PYSPY_ARGS", "").split(),
            ],
            affinity=procs.load_cpus(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        return (p, folded, sc)

    def stop(self, handle) -> None:
        p, folded, sc = handle
        if p.poll() is None:
            os.kill(p.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(20)
        procs.REGISTRY.stop(p)
        if folded.exists():
            text = summarise(folded.read_text())
            out = folded.with_suffix(".txt")
            out.write_text(f"{sc.key}: {sc.title}\n\n{text}")
            self.done.append(out)


def short(frame: str) -> str:
    m = FRAME_RE.match(frame)
    if not m:
        return frame
    f = m.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in f:
            f = f.split(marker, 1)[1]
    return (
        f"{m.group('func')} ({f}:{m.group('line') or '?'})"
        if m.group("line")
        else f"{m.group('func')} ({f})"
    )


def summarise(folded: str, top: int = 30) -> str:
    self_t: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    self_fn: collections.Counter = collections.Counter()
    total = 0
    for line in folded.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        n = int(n)
        total += n
        frames = stack.split(";")
        leaf = frames[-1]
        self_t[short(leaf)] += n
        m = FRAME_RE.match(leaf)
        self_fn[
            (m.group("func") + " (" + short(leaf).split(" (", 1)[1].rsplit(":", 1)[0] + ")")
            if m
            else leaf
        ] += n
        seen = set()
        for fr in frames:
            m = FRAME_RE.match(fr)
            key = short(fr).rsplit(":", 1)[0] + ")" if m and m.group("line") else short(fr)
            if key not in seen:
                seen.add(key)
                incl[key] += n
    if not total:
        return "no samples\n"
    out = [f"{total} samples\n", "Self time by function (all lines):"]
    for k, n in self_fn.most_common(top):
        out.append(f"  {100 * n / total:5.1f}%  {k}")
    out.append("\nInclusive time by function:")
    for k, n in incl.most_common(top):
        out.append(f"  {100 * n / total:5.1f}%  {k}")
    out.append("\nSelf time by line:")
    for k, n in self_t.most_common(top):
        out.append(f"  {100 * n / total:5.1f}%  {k}")
    return "\n".join(out) + "\n"
