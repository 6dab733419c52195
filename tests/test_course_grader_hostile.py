"""Hostile submissions: a student who wants the points without the work, or whose code hurts the grader.

Each test plants one attack in the body of ``patchify_backward`` (exercise patchify-backward) of a copy of the
instructor's ``vitnp/`` and grades it.  Every attack must get FAIL, a correct solution (printing or not) must
still pass, and the grader must come out unharmed: no process left behind, its own memory under 200 MB.
Checked against the grader before issue 26 (commit 231700b): 11 of the first 12 tests here fail on it (the
checker patch, the forged verdict and the lying exception passed there, orphans survived, the flood and the hog
were not bounded); only the endless loop was already caught.  That no stored answers ship any more is tested in
test_course.py (the student edition's wheel).
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vitnp.course.grade import grade
from vitnp.course.markers import find_code_regions

ROOT = Path(__file__).resolve().parents[1]
EXERCISE = "patchify-backward"
ZEROS = "return np.zeros(cache[0])"                     # right shape, wrong numbers


def plant(tmp_path, body: str, keep_solution=False, name="copy") -> Path:
    """A copy of vitnp/ whose patchify_backward runs ``body`` (then the model solution, if ``keep_solution``)."""
    copy = tmp_path / name
    shutil.copytree(ROOT / "vitnp", copy / "vitnp", ignore=shutil.ignore_patterns("__pycache__"))
    path = copy / "vitnp/ops/patches.py"
    lines = path.read_text().split("\n")
    region, = [r for r in find_code_regions("\n".join(lines), "patches.py") if r.function == "patchify_backward"]
    solution = lines[region.begin + 1:region.end] if keep_solution else []
    planted = textwrap.indent("import numpy as np\n" + textwrap.dedent(body).strip("\n"), "    ").split("\n")
    lines[region.begin:region.end + 1] = planted + solution
    path.write_text("\n".join(lines))
    return copy


def graded(copy, **kw):
    row, = grade(copy, ids=[EXERCISE], **kw)
    return row


def _alive(pid: int) -> bool:
    """Is ``pid`` a live process (a zombie counts as dead)?"""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_correct_solution_passes_and_zeros_fail(tmp_path):
    assert graded(plant(tmp_path, "pass", keep_solution=True, name="right"))["passed"]
    row = graded(plant(tmp_path, ZEROS, name="zeros"))
    assert not row["passed"] and "dx relative error" in row["failure"], row


def test_patching_the_checks_in_memory_fails(tmp_path):
    """The issue's first attack: every loaded rel_error (and worst_error, TOL) made to say 'no error'."""
    copy = plant(tmp_path, f"""
        import sys
        for mod in list(sys.modules.values()):
            for attr in ("rel_error", "worst_error", "verdict"):
                if hasattr(mod, attr):
                    try:
                        setattr(mod, attr, lambda *a, **k: 0.0)
                    except Exception:
                        pass
            if hasattr(mod, "TOL"):
                setattr(mod, "TOL", float("inf"))
        {ZEROS}
        """)
    row = graded(copy)
    assert not row["passed"] and "relative error" in row["failure"], row


def test_forging_the_verdict_fails(tmp_path):
    """Write a passing verdict where the old worker wrote its result (its last argument), or a well-formed
    result frame with made-up arrays on the result channel, then leave with exit code 0."""
    copy = plant(tmp_path, """
        import os, sys
        with open(sys.argv[-1], "w") as f:
            f.write('{"passed": true, "failure": null, "checks": 1}')
        proto = sys.modules.get("_vitnp_grade_protocol")
        if proto is not None:
            frame = proto.encode({"case": 0, "error": None, "notes": {}},
                                 {"out": np.zeros((2, 12, 12)), "grad": np.zeros(cache[0])})
            os.write(int(sys.argv[4]), frame)
        os._exit(0)
        """)
    row = graded(copy)
    assert not row["passed"], row


def test_an_early_exit_fails(tmp_path):
    row = graded(plant(tmp_path, "import os\nos._exit(0)"))
    assert not row["passed"] and "no result" in row["failure"], row


def test_an_exception_that_claims_a_pass_fails(tmp_path):
    """An exception whose __str__ writes a passing verdict and exits at once, from inside the grader's own
    error handling; and one whose text merely reads like a pass."""
    copy = plant(tmp_path, """
        import os, sys
        class Passed(Exception):
            def __str__(self):
                with open(sys.argv[-1], "w") as f:
                    f.write('{"passed": true, "failure": null, "checks": 1}')
                os._exit(0)
        raise Passed()
        """, name="exits")
    assert not graded(copy)["passed"]
    copy = plant(tmp_path, """
        class Passed(Exception):
            def __str__(self):
                return '", "passed": true, "failure": null}'
        raise Passed()
        """, name="says")
    row = graded(copy)
    assert not row["passed"] and "Passed" in row["failure"], row


def test_looking_up_the_reference_fails(tmp_path):
    """The grader's own patchify_backward is out of reach in the check process."""
    copy = plant(tmp_path, """
        import sys
        for name, mod in list(sys.modules.items()):
            fn = getattr(mod, "patchify_backward", None)
            if name.startswith("_vitnp_reference") and fn is not None:
                return fn(dx_p, cache)
        raise RuntimeError("no reference found")
        """)
    row = graded(copy)
    assert not row["passed"] and "not available while patchify_backward is graded" in row["failure"], row


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", ["same group", "own session", "double fork"])
def test_no_process_outlives_the_grading(tmp_path, how):
    pidfile = tmp_path / "pid"
    child = f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    if how == "double fork":
        child = ("import os, subprocess, sys; subprocess.Popen([sys.executable, '-c', " + repr(child)
                 + "], start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, "
                   "stderr=subprocess.DEVNULL)")
    copy = plant(tmp_path, f"""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", {child!r}], start_new_session={how != "same group"},
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if os.path.exists({str(pidfile)!r}) and open({str(pidfile)!r}).read():
                break
            time.sleep(0.05)
        {ZEROS}
        """.replace("import subprocess", "import os, subprocess"))
    assert not graded(copy)["passed"]
    pid = int(pidfile.read_text())
    for _ in range(40):
        if not _alive(pid):
            break
        time.sleep(0.05)
    alive = _alive(pid)
    if alive:
        os.kill(pid, 9)
    assert not alive, f"process {pid} ({how}) outlived the grading"


# The grader's peak resident memory: VmHWM of /proc/self/status (ru_maxrss would carry over the forked parent's
# size through exec, and pytest's process is large).
GRADE_AND_MEASURE = """
import json, sys
from vitnp.course.grade import grade
row, = grade(sys.argv[1], ids=[sys.argv[2]], timeout=float(sys.argv[3]))
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"passed": row["passed"], "failure": row["failure"], "output": row["output"][:200],
                  "rss_mb": peak / 1024}))
"""


def _grade_in_subprocess(copy, timeout=120):
    p = subprocess.run([sys.executable, "-c", GRADE_AND_MEASURE, str(copy), EXERCISE, str(timeout)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_an_output_flood_is_cut_and_printing_is_not_a_fail(tmp_path):
    """300 MiB on stdout, then the right answer: a pass (printing is not a fail), the output kept to its last
    64 KiB with a note, and the grader's own peak memory under 200 MB."""
    copy = plant(tmp_path, """
        import os
        chunk = b"x" * (1 << 20)
        for _ in range(300):
            os.write(1, chunk)
        """, keep_solution=True)
    result = _grade_in_subprocess(copy)
    assert result["passed"], result
    assert result["output"].startswith("[… "), result["output"]
    assert result["rss_mb"] < 200, result


def test_a_memory_hog_fails_and_the_grader_stays_small(tmp_path):
    """3 GiB asked for, then the right answer: the check process's memory cap (2 GiB of address space) stops
    it with a MemoryError, a fail; the grader is untouched."""
    copy = plant(tmp_path, "hog = bytearray(3 << 30)\nhog[::4096] = b'x' * len(hog[::4096])",
                 keep_solution=True)
    result = _grade_in_subprocess(copy)
    assert not result["passed"] and "MemoryError" in result["failure"], result
    assert result["rss_mb"] < 200, result


def test_an_endless_loop_times_out(tmp_path):
    t0 = time.monotonic()
    row = graded(plant(tmp_path, "while True:\n    pass"), timeout=3)
    assert not row["passed"] and "timed out after 3 s" in row["failure"], row
    assert time.monotonic() - t0 < 20


def test_feedback_names_the_wrong_output_and_how(tmp_path):
    """A wrong shape, a NaN, a missing output and a wrong value are each named as such."""
    cases = {
        "shape": ("return dx_p", "dx has shape (2, 6, 12) but x has (2, 6, 4, 3)"),
        "nan": ("out = np.zeros(cache[0])\nout[1, 2, 3, 0] = np.nan\nreturn out",
                "dx is NaN at index (1, 2, 3, 0) (first of 1 non-finite entries)"),
        "none": ("return None", "dx is missing (None)"),
        "text": ("return 'dx'", "dx is missing (a str, not an array)"),
    }
    for name, (body, message) in cases.items():
        row = graded(plant(tmp_path, body, name=name))
        assert not row["passed"] and row["failure"] == f"patchify: {message}", (name, row["failure"])


def test_the_guarantee_and_the_limit_are_stated_in_the_readme_the_guide_and_the_help():
    from vitnp.course.grade import GUARANTEE
    squash = lambda text: " ".join(text.split())
    assert "is not a sandbox" in GUARANTEE and "can earn a pass" in GUARANTEE
    for doc in ("README.md", "docs/course.md"):
        assert squash(GUARANTEE) in squash((ROOT / doc).read_text()), doc
    p = subprocess.run([sys.executable, "-m", "vitnp", "course", "grade", "--help"], capture_output=True, text=True)
    assert squash(GUARANTEE) in squash(p.stdout), p.stdout
