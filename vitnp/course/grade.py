"""The grader: ``python -m vitnp course grade [--root DIR | --class DIR]``.

**Where the verdict is made.**  The grader never imports the copy it grades.  For each exercise it draws new
inputs (:mod:`vitnp.course.checks`, from the run's seed), starts a check process (:mod:`vitnp.course.worker`)
that imports the copy and returns the arrays the copy's functions compute, and compares them *here* with what
its own reference computes on the same inputs: gradients against centred differences of the reference forward,
forwards and losses against the reference's values.  So nothing the graded code does to its own process (patch
the checks, write a verdict, exit early, print) turns a fail into a pass: only the right numbers pass.

**What the grader survives.**  Each check process runs in its own session and is killed whole, with whatever it
started, at the timeout and when it ends (on Linux the grader also adopts and kills processes that escape into a
session of their own); its memory (address space) and the files it may write are capped (``resource``); it runs
in an empty temporary directory; its printed output is kept to the last 64 KiB, and its results to 32 MiB.
Printed output is not a fail: students may print while they debug; a failing row shows the output's last lines.

**What it does not do.**  It is not a sandbox: the graded code runs as the grading user, so it can read the
instructor's files (the reference solutions among them) or the network of the grading machine.  Grade copies
you do not trust in a container without network, e.g. ``docker run --rm --network none -v "$PWD":/course -w
/course IMAGE python -m vitnp course grade --class submissions``.

**Isolation.**  In the check process every *other* exercise's function of the copy is replaced by the
grader's own, so a wrong ``linear_backward`` fails linear-backward only.  A student who grades their own copy
with their own installation gets "needs exercise X first" where the grader's copy of X is not written yet,
and cannot grade the forward exercises (the grader computes their answers with its reference).
"""
from __future__ import annotations

import csv
import ctypes
import io
import os
import secrets
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import checks, edition, protocol
from .exercises import BY_ID, EXERCISES
from .markers import stub_exercise_id

TIMEOUT = 60.0                           # seconds per exercise
MEMORY = 2 << 30                         # bytes of address space for a check process
FILE_SIZE = 64 << 20                     # bytes: the largest file a check process may write
OUTPUT_KEEP = 64 << 10                   # bytes of printed output kept (the last ones)
RESULT_MAX = 32 << 20                    # bytes of results accepted from a check process
WORKER = Path(__file__).with_name("worker.py")
GUARANTEE = ("The verdict is computed in the grader's process from fresh random inputs, so nothing the graded code "
             "does inside Python (patching the checks, forging a result, exiting early) can earn a pass; the grader "
             "is not a sandbox: graded code can read the instructor's files and the network of the grading machine, "
             "so grade untrusted copies in a container without network (docs/course.md, \"Grading the code exercises\").")


def default_root() -> Path:
    """The project root of the installed vitnp (the directory that holds the ``vitnp`` package)."""
    return Path(__file__).resolve().parents[2]


def new_seed() -> int:
    """A fresh seed for a grading run (recorded in every row, so ``--seed`` reproduces the run)."""
    return secrets.randbelow(2 ** 31)


# ---- one check process ----------------------------------------------------------------------------------------
_PR_SET_CHILD_SUBREAPER = 36
_workers_lock = threading.Lock()
_workers: set = set()
_subreaper = None


def _become_subreaper() -> bool:
    """On Linux, make orphans of our check processes our children (so they can be found and killed)."""
    global _subreaper
    if _subreaper is None:
        _subreaper = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                _subreaper = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
            except (OSError, AttributeError):
                pass
    return _subreaper


def _children() -> set:
    """PIDs of this process's children (Linux /proc; empty elsewhere)."""
    me, found = os.getpid(), set()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2:].split()
            if len(fields) > 1 and int(fields[1]) == me:
                found.add(int(entry))
    return found


def _reap_escaped(baseline: set) -> int:
    """Kill children of ours that are neither check processes nor there before grading (orphans adopted as
    subreaper); repeat while killing one hands us its own children.  Returns how many were killed."""
    killed = 0
    for _ in range(100):
        with _workers_lock:                  # check processes start under this lock: none can slip in between
            strays = _children() - baseline - _workers
        if not strays:
            return killed
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                killed += 1
            except (ProcessLookupError, ChildProcessError):
                pass
        time.sleep(0.01)
    return killed


class _Tail:
    """The last ``keep`` bytes of a stream, and how many came in all."""

    def __init__(self, keep=OUTPUT_KEEP):
        self.keep, self.total, self.data = keep, 0, bytearray()

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.data += chunk
        if len(self.data) > 2 * self.keep:
            del self.data[:-self.keep]

    def text(self) -> str:
        kept = bytes(self.data[-self.keep:])
        text = kept.decode("utf-8", "replace")
        if self.total > len(kept):
            text = f"[… {self.total - len(kept)} bytes of output cut; the last {len(kept)} follow]\n" + text
        return text


def run_worker(root: Path, exercise, cases: list, *, timeout=TIMEOUT, memory=MEMORY) -> dict:
    """Run the check process of one exercise on the copy at ``root``: {'frames' | 'error', 'output', 'exit'}."""
    request = protocol.encode(
        {"function": exercise.module, "others": [o.module for o in EXERCISES if o.id != exercise.id],
         "programs": [c.program for c in cases]},
        {f"{i}/{k}": v for i, c in enumerate(cases) for k, v in c.arrays.items()})
    _become_subreaper()
    baseline = _children()
    read_fd, write_fd = os.pipe()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VITNP"))}
    env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    output, results, overflow, timed_out = _Tail(), bytearray(), False, False
    with tempfile.TemporaryDirectory(prefix="vitnp-grade-") as scratch:
        try:
            with _workers_lock:              # started and registered at once (see _reap_escaped)
                proc = subprocess.Popen(
                    [sys.executable, "-I", str(WORKER), str(root), str(default_root()),
                     str(Path(protocol.__file__).resolve()), str(write_fd), str(memory), str(FILE_SIZE)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=(write_fd,),
                    cwd=scratch, env=env, start_new_session=True)
                _workers.add(proc.pid)
        except OSError as err:
            os.close(read_fd)
            os.close(write_fd)
            return {"error": f"cannot start the check process: {err}", "output": "", "exit": None}
        os.close(write_fd)

        def feed():
            try:
                proc.stdin.write(request)
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
        threading.Thread(target=feed, daemon=True).start()
        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ, "output")
        sel.register(read_fd, selectors.EVENT_READ, "results")
        ended_at = None
        try:
            while sel.get_map():
                now = time.monotonic()
                if now > deadline:
                    timed_out = True
                    break
                if ended_at is None and proc.poll() is not None:
                    ended_at = now
                if ended_at is not None and now > ended_at + 1.0:  # ended, but something it started holds a pipe
                    break
                for key, _ in sel.select(timeout=0.1):
                    fd = key.fd
                    try:
                        chunk = os.read(fd, 1 << 16)
                    except OSError:
                        chunk = b""
                    if not chunk:
                        sel.unregister(key.fileobj)
                    elif key.data == "output":
                        output.add(chunk)
                    elif len(results) + len(chunk) > RESULT_MAX:
                        overflow = True
                        sel.unregister(key.fileobj)
                    else:
                        results += chunk
                if overflow:
                    break
        finally:
            sel.close()
            try:
                os.killpg(proc.pid, signal.SIGKILL)                 # the process group: whatever it started
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
            with _workers_lock:
                _workers.discard(proc.pid)
            _reap_escaped(baseline)
            os.close(read_fd)
            proc.stdout.close()
    code = proc.returncode
    exit_text = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
    if timed_out:
        return {"error": f"timed out after {timeout:g} s", "output": output.text(), "exit": exit_text}
    if overflow:
        return {"error": f"sent more than {RESULT_MAX >> 20} MiB of results", "output": output.text(),
                "exit": exit_text}
    try:
        frames = protocol.decode(bytes(results))
    except protocol.ProtocolError as err:
        return {"error": f"sent malformed results ({err})", "output": output.text(), "exit": exit_text}
    return {"frames": frames, "output": output.text(), "exit": exit_text}


# ---- one exercise, one copy -----------------------------------------------------------------------------------
def _clean(text, limit=400) -> str:
    text = " ".join(str(text).split())
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[:limit] + "…"


def _describe(error: str, exercise) -> str:
    """An error text from the check process, in words for the gradebook."""
    text = _clean(error)
    if text.startswith("NotImplementedError: "):
        message = text[len("NotImplementedError: "):]
        other = stub_exercise_id(message)
        if other is not None:
            if other != exercise.id:
                return f"needs exercise {other} first (this grader's copy of it is not done yet): {message}"
            return message
    return text


class Grader:
    """Grades exercises of copies with one seed; each exercise's cases and expected answers are computed once
    and reused for every copy."""

    def __init__(self, seed=None, timeout=TIMEOUT, memory=MEMORY):
        self.seed = new_seed() if seed is None else int(seed)
        self.timeout, self.memory = timeout, memory
        self._cases, self._lock = {}, threading.Lock()

    def prepared(self, exercise) -> list:
        """[(case, expected)] of one exercise, or an error string if the grader's own reference cannot compute
        them (a student edition grading a forward exercise it has not written)."""
        with self._lock:
            if exercise.id not in self._cases:
                if edition.STUDENT and checks.self_referential(exercise):
                    self._cases[exercise.id] = (f"{exercise.id} is graded with the instructor's installation: this "
                                                f"student edition would compute its answers with the code under test")
                    return self._cases[exercise.id]
                try:
                    cs = checks.cases(exercise.id, self.seed)
                    self._cases[exercise.id] = [(c, checks.expected(c)) for c in cs]
                except NotImplementedError as err:
                    self._cases[exercise.id] = (f"this grader cannot compute the answers of {exercise.id}: its own "
                                                f"reference lacks them ({_clean(err)}); grade with the "
                                                f"instructor's installation")
            return self._cases[exercise.id]

    def grade_exercise(self, root: Path, exercise) -> dict:
        t0 = time.perf_counter()
        row = {"id": exercise.id, "where": exercise.where, "points": exercise.points, "passed": False,
               "failure": None, "seconds": 0.0, "seed": self.seed, "output": ""}
        prepared = self.prepared(exercise)
        if isinstance(prepared, str):
            row["failure"] = prepared
        else:
            row["failure"] = self._judge(root, exercise, prepared, row)
            row["passed"] = row["failure"] is None
        row["seconds"] = time.perf_counter() - t0
        return row

    def _judge(self, root, exercise, prepared, row) -> str | None:
        cases = [c for c, _ in prepared]
        run = run_worker(root, exercise, cases, timeout=self.timeout, memory=self.memory)
        row["output"] = run["output"]
        if "error" in run:
            return f"the check process {run['error']}"
        by_case, seen = {}, set()
        for header, arrays in run["frames"]:
            i = header.get("case") if isinstance(header, dict) else "?"
            if i is None and isinstance(header.get("error"), str):
                return _describe(header["error"], exercise)
            if not (type(i) is int and 0 <= i < len(cases)) or i in seen:
                return f"the check process sent results it was not asked for (case {_clean(i, 40)})"
            seen.add(i)
            by_case[i] = (header, arrays)
        for i, (case, want) in enumerate(prepared):
            if i not in by_case:
                return (f"{case.name}: no result (the check process ended with {run['exit']} before returning it"
                        + (f"; its last output: {_clean(run['output'][-300:], 300)}" if run["output"].strip() else "")
                        + ")")
            header, arrays = by_case[i]
            if header.get("error") is not None:
                return f"{case.name}: {_describe(header['error'], exercise)}"
            notes = header.get("notes") if isinstance(header.get("notes"), dict) else {}
            problem = checks.verdict(case, want, arrays, {k: _clean(v, 80) for k, v in notes.items()})
            if problem is not None:
                return f"{case.name}: {problem}"
        return None

    def grade(self, root, ids=None) -> list:
        root = _check_root(root)
        return [self.grade_exercise(root, BY_ID[i]) for i in _ids(ids)]


def _ids(ids) -> list:
    unknown = [i for i in ids or () if i not in BY_ID]
    if unknown:
        raise ValueError(f"unknown exercise(s) {', '.join(unknown)}; known: {', '.join(BY_ID)}")
    return list(ids) if ids else [e.id for e in EXERCISES]


def _check_root(root) -> Path:
    root = Path(root).resolve() if root is not None else default_root()
    if not (root / "vitnp" / "__init__.py").is_file():
        raise ValueError(f"{root}: no vitnp package here (expected {root / 'vitnp' / '__init__.py'})")
    return root


def grade(root=None, ids=None, timeout=TIMEOUT, seed=None, memory=MEMORY) -> list:
    """[{id, where, points, passed, failure, seconds, seed, output}] for the exercises ``ids`` (default all) of
    the tree at ``root`` (default: the installed package's)."""
    return Grader(seed, timeout, memory).grade(root, ids)


# ---- a class --------------------------------------------------------------------------------------------------
GRADEBOOK_FIELDS = ("student", "exercise", "points", "max_points", "first_failing_check", "seed")


def grade_class(class_dir, ids=None, timeout=TIMEOUT, seed=None, memory=MEMORY, jobs=1, progress=None) -> list:
    """Grade every student copy under ``class_dir`` (one folder each, named after the student).  A folder
    without ``vitnp/`` gets 0 points on every exercise with the reason; one student's crash or endless loop
    costs that exercise its timeout and nothing else.  Returns the gradebook rows (:data:`GRADEBOOK_FIELDS`)."""
    class_dir = Path(class_dir).resolve()
    if not class_dir.is_dir():
        raise ValueError(f"{class_dir}: not a directory (expected one folder per student)")
    students = sorted(p for p in class_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not students:
        raise ValueError(f"{class_dir}: no student folders in it")
    grader = Grader(seed, timeout, memory)
    wanted = [BY_ID[i] for i in _ids(ids)]

    def one(task):
        student, exercise = task
        if not (student / "vitnp" / "__init__.py").is_file():
            row = {"passed": False, "failure": "no vitnp/ package in this folder"}
        else:
            try:
                row = grader.grade_exercise(student, exercise)
            except Exception as err:                    # the grader's own trouble (a full disk, say): this row only
                row = {"passed": False, "failure": f"not graded: {type(err).__name__}: {_clean(err)}"}
        if progress:
            progress(student.name, exercise.id, row["passed"])
        return {"student": student.name, "exercise": exercise.id,
                "points": exercise.points if row["passed"] else 0, "max_points": exercise.points,
                "first_failing_check": row["failure"] or "", "seed": grader.seed}
    tasks = [(s, e) for s in students for e in wanted]
    for e in wanted:                                   # the expected answers once, before the threads start
        grader.prepared(e)
    with ThreadPoolExecutor(max_workers=max(1, int(jobs))) as pool:
        return list(pool.map(one, tasks))


def totals(rows) -> dict:
    """{student: (points, max_points, seed)} of gradebook rows, in the order students first appear."""
    out = {}
    for r in rows:
        got, total, _ = out.get(r["student"], (0, 0, r["seed"]))
        out[r["student"]] = (got + r["points"], total + r["max_points"], r["seed"])
    return out


def write_gradebook(rows, path) -> None:
    """The rows as CSV (temporary file, then rename): one row per student and exercise, then a total per
    student (exercise ``TOTAL``)."""
    from ..io.atomic import atomic_write
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=GRADEBOOK_FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    for student, (got, total, seed) in totals(rows).items():
        w.writerow({"student": student, "exercise": "TOTAL", "points": got, "max_points": total,
                    "first_failing_check": "", "seed": seed})
    with atomic_write(path, "w") as f:
        f.write(buf.getvalue())


def format_table(rows) -> str:
    """``id | what | points | result | first failing check``, the total and the seed."""
    head = f"{'id':<24} | {'what':<44} | {'points':>6} | {'result':<6} | first failing check"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['id']:<24} | {r['where']:<44} | {r['points']:>6} | {'pass' if r['passed'] else 'FAIL':<6} | "
                     f"{r['failure'] or ''}")
    got = sum(r["points"] for r in rows if r["passed"])
    total = sum(r["points"] for r in rows)
    passed = sum(r["passed"] for r in rows)
    lines.append(f"total: {got} / {total} points, {passed} of {len(rows)} exercises passed")
    if rows:
        lines.append(f"seed: {rows[0]['seed']} (--seed {rows[0]['seed']} grades with the same inputs again)")
    return "\n".join(lines)
