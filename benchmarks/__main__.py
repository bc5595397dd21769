"""Command line: ``python -m benchmarks [--quick | --full | --smoke] ...``."""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
import time
from pathlib import Path

from . import harness, procs, report

ROOT = Path(__file__).resolve().parent.parent


def select(all_sc: list, globs: list[str], *, full: bool) -> list:
    """The scenarios to run: those matching any glob; without globs, every
    scenario for ``--full`` and the ``quick`` ones otherwise (the 10,000-client
    scenarios take minutes)."""
    if globs:
        return [sc for sc in all_sc if any(fnmatch.fnmatch(sc.key, g) for g in globs)]
    return [sc for sc in all_sc if full or sc.quick]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Tantra vs the seed's Node.js ws relay (issue 5 scenarios).",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick", action="store_true", help="3 short repetitions (about 10 min; default)"
    )
    mode.add_argument(
        "--full", action="store_true", help="5 longer repetitions, for release numbers"
    )
    mode.add_argument("--smoke", action="store_true", help="1 tiny repetition (seconds; for tests)")
    p.add_argument(
        "-s",
        "--scenario",
        action="append",
        default=[],
        help="only scenarios matching this glob (repeatable), e.g. 'fanout-*'",
    )
    p.add_argument(
        "-t",
        "--target",
        action="append",
        choices=sorted(procs.HUBS),
        default=[],
        help="only this hub (repeatable); default all (limit: the C relay, where a scenario "
        "measures against it)",
    )
    p.add_argument(
        "--candidate",
        metavar="DIR",
        help="also run Tantra from DIR (a checkout with tantra/ in it) as target 'candidate', "
        "alternating with the installed Tantra: A/B a tuning change in one run",
    )
    p.add_argument("--reps", type=int, help="override repetitions")
    p.add_argument("--duration", type=float, help="override the measurement window (s)")
    p.add_argument(
        "--out",
        type=Path,
        default=ROOT / "benchmarks" / "results",
        help="where the .md/.json go (default benchmarks/results/)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the Tantra hub during its first repetition of each scenario",
    )
    p.add_argument(
        "--loader",
        choices=["c", "python", "node"],
        default=None,
        help="subscriber load generator: C epoll (default when a C compiler exists), "
        "Python asyncio/uvloop raw frames, or Node ws clients",
    )
    p.add_argument("--list", action="store_true", help="list scenarios and exit")
    args = p.parse_args(argv)

    all_sc = harness.scenarios()
    if args.list:
        for sc in all_sc:
            extra = "" if sc.quick else "  (--full or -s only)"
            print(f"{sc.key:22s} {sc.title}  [{', '.join(sc.targets)}]{extra}")
        return 0
    timing = harness.FULL if args.full else harness.SMOKE if args.smoke else harness.QUICK
    modename = "full" if args.full else "smoke" if args.smoke else "quick"
    if args.reps or args.duration:
        timing = harness.Timing(
            **{
                **timing.__dict__,
                **({"reps": args.reps} if args.reps else {}),
                **({"dur": args.duration, "rate_dur": args.duration} if args.duration else {}),
            }
        )
    selected = select(all_sc, args.scenario, full=args.full)
    if not selected:
        p.error("no scenario matches " + ", ".join(args.scenario))
    # "limit" (loadgen/wsrelay.c) runs only in the scenarios that list it
    targets = args.target or ["tantra", "reference", "limit"]
    if args.candidate:
        procs.CandidateHub.PATH = str(Path(args.candidate).resolve())
        if "candidate" not in targets:
            targets.insert(1, "candidate")

    args.loader = args.loader or ("c" if procs.c_compiler_available() else "python")
    procs.Loader.SUB_IMPL = args.loader
    if args.loader == "c":
        procs.build_wssub()
    nofile = procs.raise_nofile()
    print(
        f"open-files limit {nofile}; hub CPU {procs.hub_cpu()}, load CPUs {procs.load_cpus()}",
        flush=True,
    )
    if "reference" in targets and procs.ReferenceHub.available() is None:
        procs.ReferenceHub.ensure_installed()
    versions = {}
    for name in targets:
        if procs.HUBS[name].available() is None:
            versions[name] = procs.HUBS[name].version()
        else:
            print(f"{name}: not run ({procs.HUBS[name].available()})", flush=True)
    profiler = None
    if args.profile:
        from .profile import Profiler

        profiler = Profiler(args.out)
    started = time.monotonic()
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:]),
        "mode": modename,
        "loader": args.loader,
        "reps": timing.reps,
        "timing": timing.__dict__,
        "machine": report.machine(),
        "hub_cpu": procs.hub_cpu(),
        "load_cpus": sorted(procs.load_cpus() or []),
        "versions": versions,
        "bench_commit": report.git_commit(ROOT),
    }
    try:
        results = harness.run(
            selected, targets, timing, log=lambda s: print(s, flush=True), profile=profiler
        )
    except KeyboardInterrupt:
        procs.REGISTRY.stop_all()
        print("interrupted; all child processes stopped", file=sys.stderr)
        return 130
    finally:
        procs.REGISTRY.stop_all()
    meta["elapsed_s"] = round(time.monotonic() - started, 1)
    meta["loadavg_at_end"] = os.getloadavg()
    mdp, jp = report.write(results, meta, args.out)
    print()
    print(report.markdown(results, meta))
    print(f"written: {mdp}\n         {jp}  (total {meta['elapsed_s']} s)")
    if profiler:
        for pth in profiler.done:
            print(f"profile: {pth}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
