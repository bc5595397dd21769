"""Child processes of the benchmark: the hubs under test and the load generators.

Owns: starting, pinning, measuring (/proc) and always stopping processes.
Does not know scenarios or reports.

Every child gets its own session, ``RLIMIT_NOFILE`` raised to the hard limit,
a CPU affinity (hub on one core, load on the other when there are two), and
``PR_SET_PDEATHSIG`` so that it dies with the harness even on SIGKILL.
``Registry.stop_all`` (atexit and signal handlers) terminates, then kills.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import ctypes
import importlib.util
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REFERENCE_DIR = HERE / "reference"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1


def cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def hub_cpu() -> int | None:
    c = cpus()
    return c[0] if len(c) >= 2 else None


def load_cpus() -> set[int] | None:
    c = cpus()
    return set(c[1:]) if len(c) >= 2 else None


def _preexec(affinity: set[int] | None):
    def fn():
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:
            pass
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if affinity:
            os.sched_setaffinity(0, affinity)

    return fn


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds(pid: int) -> float:
    """utime + stime of all threads of ``pid`` (from /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of all threads of ``pid`` in seconds: user code vs the kernel."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Registry:
    """Every process the benchmark starts, so that all of them get stopped."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        atexit.register(self.stop_all)

    def popen(self, cmd, affinity=None, **kw) -> subprocess.Popen:
        p = subprocess.Popen(cmd, start_new_session=True, preexec_fn=_preexec(affinity), **kw)
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen, timeout: float = 5.0) -> None:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        for stream in (p.stdin, p.stdout, p.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self) -> None:
        for p in list(self.procs):
            self.stop(p, timeout=3.0)


REGISTRY = Registry()


def _install_signal_handlers() -> None:
    def handler(signum, frame):
        REGISTRY.stop_all()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


_install_signal_handlers()


class OutputTail:
    """Drain a child's output in a thread (so it never blocks on a full
    pipe), keep the last lines, and let callers wait for a pattern."""

    def __init__(self, stream, keep: int = 200) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=keep)
        self.cond = threading.Condition()
        self.matches: dict[str, str] = {}
        self.closed = False
        threading.Thread(target=self._run, args=(stream,), daemon=True).start()

    def _run(self, stream) -> None:
        for raw in stream:
            line = raw.decode(errors="replace").rstrip() if isinstance(raw, bytes) else raw.rstrip()
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def wait_for(self, pattern: re.Pattern, count: int, timeout: float) -> list[re.Match]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found, seen = [], set()
                for line in self.lines:
                    m = pattern.search(line)
                    if m and m.group(1) not in seen:
                        seen.add(m.group(1))
                        found.append(m)
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise RuntimeError(
                        "hub did not report its ports; last output:\n"
                        + "\n".join(list(self.lines)[-20:])
                    )
                self.cond.wait(left)


# ---------------------------------------------------------------------- hubs


class Hub:
    name = "?"
    has_raw = False

    def __init__(self, listen_port: int = 0) -> None:
        self.proc: subprocess.Popen | None = None
        #: the WebSocket port to listen on: 0 = any; a restart passes the old one
        self.listen_port = listen_port
        self.http_port = self.tcp_port = self.udp_port = 0
        self.tail: OutputTail | None = None
        self.workdir = tempfile.mkdtemp(prefix=f"tantra-bench-{self.name}-")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def cpu_split(self) -> tuple[float, float]:
        return cpu_split(self.pid)

    def rss(self) -> int:
        return rss_kb(self.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def launch(self, cmd: list[str], ready: str, count: int, timeout: float, **popen) -> list:
        """Start ``cmd`` pinned to the hub CPU in the workdir; wait for ``count`` ``ready`` lines.

        ``ready`` is a regex whose groups 1 and 2 are a listener's name and
        port; returns the matches. Every hub kind starts through here, so
        all are pinned and watched the same way.
        """
        self.proc = REGISTRY.popen(
            cmd,
            affinity={hub_cpu()} if hub_cpu() is not None else None,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            **popen,
        )
        self.tail = OutputTail(self.proc.stdout)
        return self.tail.wait_for(re.compile(ready), count, timeout)

    def stop(self) -> None:
        if self.proc is not None:
            REGISTRY.stop(self.proc)
            self.proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


class ReferenceHub(Hub):
    name = "reference"

    @staticmethod
    def available() -> str | None:
        if shutil.which("node") is None:
            return "node not found"
        return None

    @staticmethod
    def ensure_installed() -> None:
        if (REFERENCE_DIR / "node_modules" / "ws").is_dir():
            return
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm not found: cannot install benchmarks/reference")
        # cwd rather than --prefix: --prefix also moves npm's global config
        # (and with it any registry/CA settings the machine configures there)
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=REFERENCE_DIR,
            check=True,
            timeout=300,
        )

    def start(self) -> None:
        self.ensure_installed()
        m = self.launch(
            ["node", str(REFERENCE_DIR / "relay.js"), str(self.listen_port), "127.0.0.1"],
            r"(ws) listening on [\d.]+:(\d+)",
            1,
            20,
        )
        self.http_port = int(m[0].group(2))

    @staticmethod
    def version() -> str:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        try:
            ws = json.loads((REFERENCE_DIR / "node_modules" / "ws" / "package.json").read_text())[
                "version"
            ]
        except OSError:
            ws = "?"
        return f"node {node}, ws {ws}"


class TantraHub(Hub):
    name = "tantra"
    has_raw = True
    #: ``--store`` for the hub: history is on by default since the store landed;
    #: the fan-out, ingest, memory and WAMP scenarios measure the hub without it
    #: (the reference keeps no history either). ``ingest-tcp-store`` sets sqlite.
    store = "none"
    #: more ``twistd tantra`` options (``--auth``, ``--mqtt``, ...): the new-path scenarios
    extra_args: list[str] = []

    @staticmethod
    def available() -> str | None:
        if importlib.util.find_spec("tantra") is None:
            return "tantra not installed in this Python (pip install -e .)"
        if not (Path(sys.executable).parent / "twistd").exists():
            return "twistd not found next to this Python"
        return None

    def start(self) -> None:
        twistd = str(Path(sys.executable).parent / "twistd")
        cmd = [
            twistd,
            "-n",
            "--pidfile=",
            "tantra",
            "--http",
            f"tcp:{self.listen_port}:interface=127.0.0.1",
            "--tcp",
            "tcp:0:interface=127.0.0.1",
            "--udp",
            "0",
            "--udp-interface",
            "127.0.0.1",
            "--store",
            self.store,
            *self.extra_args,
        ]
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.extra_env())
        found = self.launch(cmd, r"\b(http|tcp|udp) listening on [\d.]+:(\d+)", 3, 30, env=env)
        ports = {m.group(1): int(m.group(2)) for m in found}
        self.http_port, self.tcp_port, self.udp_port = ports["http"], ports["tcp"], ports["udp"]

    @classmethod
    def extra_env(cls) -> dict:
        return {}

    @classmethod
    def version(cls) -> str:
        """Version and git commit of the tantra that twistd will import
        (run from a neutral directory, as the hub is)."""
        code = (
            "import sys, tantra, twisted, autobahn; "
            "print(tantra.__version__, tantra.__file__, sys.version.split()[0], "
            "twisted.__version__, autobahn.__version__)"
        )
        r = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            cwd=tempfile.gettempdir(),
            env=dict(os.environ, **cls.extra_env()),
        )
        try:
            v, origin, py, tw, ab = r.stdout.split()
        except ValueError:
            return "tantra ?"
        src = Path(origin).parent.parent
        g = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--", "tantra"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        commit = (g.stdout.strip() or "?") + ("+dirty" if dirty else "")
        return f"tantra {v} ({src} @ {commit}), Python {py}, Twisted {tw}, autobahn {ab}"


class CandidateHub(TantraHub):
    """Tantra from another source tree (``--candidate DIR``), for A/B runs of
    a tuning change against the installed Tantra within one invocation."""

    name = "candidate"
    PATH: str | None = None

    @classmethod
    def extra_env(cls) -> dict:
        old = os.environ.get("PYTHONPATH")
        return {"PYTHONPATH": cls.PATH + (os.pathsep + old if old else "")} if cls.PATH else {}

    @classmethod
    def available(cls) -> str | None:
        if not cls.PATH:
            return "no --candidate DIR given"
        if not (Path(cls.PATH) / "tantra" / "__init__.py").exists():
            return f"{cls.PATH}/tantra/__init__.py not found"
        return TantraHub.available()


class LimitHub(Hub):
    """The physical limit of a fan-out here: ``loadgen/wsrelay.c``, a C relay
    that writes each read's frames to every client with one ``send`` each and
    does nothing else (issue 14, item 3). Pinned like the other hubs."""

    name = "limit"

    @staticmethod
    def available() -> str | None:
        return None if c_compiler_available() else "no C compiler"

    def start(self) -> None:
        m = self.launch(
            [build_c("wsrelay"), "--port", str(self.listen_port)],
            r"(limit) listening on [\d.]+:(\d+)",
            1,
            20,
        )
        self.http_port = int(m[0].group(2))

    @staticmethod
    def version() -> str:
        return "wsrelay.c (C, epoll, one send per client per read)"


HUBS = {
    "tantra": TantraHub,
    "reference": ReferenceHub,
    "candidate": CandidateHub,
    "limit": LimitHub,
}


# ------------------------------------------------------------------- loaders

LOADGEN_DIR = HERE / "loadgen"
BUILD_DIR = HERE / "build"
WSSUB_SRC = LOADGEN_DIR / "wssub.c"
WSSUB_BIN = BUILD_DIR / "wssub"


def build_c(name: str) -> str:
    """Compile ``loadgen/<name>.c`` into ``build/<name>`` if missing or older than its source."""
    src, binary = LOADGEN_DIR / f"{name}.c", BUILD_DIR / name
    if binary.exists() and binary.stat().st_mtime >= src.stat().st_mtime:
        return str(binary)
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError(f"no C compiler for {src.name}: use --loader python")
    BUILD_DIR.mkdir(exist_ok=True)
    tmp = binary.with_suffix(".tmp")
    subprocess.run([cc, "-O2", "-Wall", "-o", str(tmp), str(src)], check=True, timeout=120)
    tmp.replace(binary)
    return str(binary)


def build_wssub() -> str:
    """Compile the C subscriber if missing or older than its source."""
    return build_c("wssub")


def _opt(args: list[str], name: str, default: str) -> str:
    return args[args.index(name) + 1] if name in args[:-1] else default


def c_compiler_available() -> bool:
    return bool(os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc"))


class Loader:
    """One load-generator child speaking JSON lines (see benchmarks.load)."""

    #: subscriber implementation: "c" (loadgen/wssub.c, built on first use),
    #: "python" (benchmarks.load) or "node" (reference/sub.js)
    SUB_IMPL = "c"

    def __init__(self, args: list[str], affinity=None) -> None:
        args = [str(a) for a in args]
        impl = self.SUB_IMPL
        if impl == "node" and (
            "--protocol" in args or "--subscribe" in args or _opt(args, "--stalled", "0") != "0"
        ):
            # sub.js has no stalled clients and no WAMP: use the C/Python twin
            impl = "c" if c_compiler_available() else "python"
        if args[0] == "sub" and impl == "node":
            keep = {"--port", "--conns", "--lat-every", "--lat-out", "--path"}
            node_args = []
            for k, v in zip(args[1::2], args[2::2], strict=False):
                if k in keep:
                    node_args += [k, v]
            cmd = ["node", str(REFERENCE_DIR / "sub.js"), *node_args]
        elif args[0] == "sub" and impl == "c":
            cmd = [build_wssub(), *args[1:]]
        else:
            cmd = [sys.executable, "-m", "benchmarks.load", *args]
        env = dict(
            os.environ, PYTHONPATH=str(HERE.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")
        )
        self.proc = REGISTRY.popen(
            cmd,
            affinity=affinity if affinity is not None else load_cpus(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
        )
        self.err = OutputTail(self.proc.stderr, keep=50)
        self.msgs: collections.deque = collections.deque()
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            line = line.strip()
            if line.startswith("{"):
                with self.cond:
                    self.msgs.append(json.loads(line))
                    self.cond.notify_all()
        with self.cond:
            self.msgs.append(None)
            self.cond.notify_all()

    def expect(self, key: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                while self.msgs:
                    m = self.msgs.popleft()
                    if m is None:
                        raise RuntimeError(
                            f"load generator exited (rc={self.proc.poll()}):\n"
                            + "\n".join(list(self.err.lines)[-15:])
                        )
                    if key in m:
                        return m[key]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(
                        f"load generator: no {key!r} within {timeout}s:\n"
                        + "\n".join(list(self.err.lines)[-15:])
                    )
                self.cond.wait(left)

    def send(self, msg: dict) -> None:
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(3)
        REGISTRY.stop(self.proc, timeout=2)
