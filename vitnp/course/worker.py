"""The check process of the grader: imports the copy being graded, computes, sends arrays; decides nothing.

Started by :mod:`vitnp.course.grade` as
``python -I worker.py GRADED_ROOT REFERENCE_ROOT PROTOCOL RESULT_FD MEMORY FILE_SIZE``
(by file path, in its own session), it caps its own memory and file sizes, then

1. reads one request frame (:mod:`vitnp.course.protocol`) from standard input: the exercise's programs, the
   functions of every *other* exercise, and the input arrays, all chosen by the grader for this grading run;
2. imports ``GRADED_ROOT/vitnp`` as the package ``vitnp`` and the grader's own tree as ``_vitnp_reference``,
   and puts the reference's function in place of the copy's for every other exercise, so that an exercise is
   graded on its own (the reference's version of the graded exercise is taken out of its reach);
3. runs each program on the copy and writes one frame per program to the file descriptor RESULT_FD:
   the arrays it computed, or the error it raised.

Whatever the code under test does here (patch this module, write to RESULT_FD, exit early, print) it can only
change the arrays the grader receives; the grader compares them with what it computes itself.
"""
import importlib.util
import os
import sys
import traceback

PACKAGE, REFERENCE = "vitnp", "_vitnp_reference"


def _load(name: str, package_dir: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(package_dir, "__init__.py"),
                                                  submodule_search_locations=[package_dir])
    if spec is None:
        raise ImportError(f"{package_dir} is not a Python package")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def _replace_everywhere(package: str, old, new) -> None:
    """In every loaded module of ``package``, each name bound to ``old`` is bound to ``new`` instead (``from .linear
    import linear_backward`` makes a second reference, so one module's attribute is not enough)."""
    for mod_name, mod in list(sys.modules.items()):
        if mod_name == package or mod_name.startswith(package + "."):
            for attr, value in list(vars(mod).items()):
                if value is old:
                    setattr(mod, attr, new)


def _isolate(protocol, graded_function: str, others: list) -> None:
    """Every other exercise's function of the copy becomes the reference's, wherever the copy's modules hold
    it; the graded exercise's function becomes unreachable in the reference's modules."""
    for where in others:
        _replace_everywhere(PACKAGE, protocol.function(PACKAGE, where), protocol.function(REFERENCE, where))
    name = graded_function.partition(":")[2]

    def withheld(*args, **kwargs):
        raise RuntimeError(f"{name} of the grader's reference is not available while {name} is graded")

    _replace_everywhere(REFERENCE, protocol.function(REFERENCE, graded_function), withheld)


def _limit(memory: int, file_size: int) -> None:
    """Cap this process's address space and the size of any file it writes; no core files."""
    import resource
    for limit, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_FSIZE, file_size), (resource.RLIMIT_CORE, 0)):
        try:
            resource.setrlimit(limit, (value, value))
        except (ValueError, OSError):                     # a limit the platform does not have, or lower already
            pass


def main(argv) -> int:
    graded_root, reference_root, protocol_path, result_fd = argv[1], argv[2], argv[3], int(argv[4])
    _limit(int(argv[5]), int(argv[6]))
    spec = importlib.util.spec_from_file_location("_vitnp_grade_protocol", protocol_path)
    protocol = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(protocol)
    (request, arrays), = protocol.decode(_read_all(0))
    os.close(0)

    def send(header, out=None):
        _write_all(result_fd, protocol.encode(header, out or {}))

    try:
        _load(REFERENCE, os.path.join(reference_root, "vitnp"))
        _load(PACKAGE, os.path.join(graded_root, "vitnp"))
        _isolate(protocol, request["function"], request["others"])
    except BaseException as err:                           # a syntax error in the copy, say
        send({"case": None, "error": f"cannot import the graded copy: {_error_text(err)}",
              "where": traceback.format_exc(limit=-3)[-2000:]})
        return 0
    for i, program in enumerate(request["programs"]):
        mine = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.split("/", 1)[0] == str(i)}
        try:
            out, notes = protocol.run(program, mine, PACKAGE)
        except BaseException as err:                       # SystemExit and KeyboardInterrupt too
            send({"case": i, "error": _error_text(err)})
            continue
        send({"case": i, "error": None, "notes": notes}, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
