# Sourced by scripts/main.sh and scripts/test.sh, from the project root: sets PY, the Python that installs
# and runs vitnp.
# - An active environment is used as it is: $VIRTUAL_ENV (venv), $CONDA_PREFIX (conda), or a python3 on
#   PATH whose sys.prefix differs from sys.base_prefix (a venv that is first on PATH without `activate`).
# - Otherwise .venv in the project root is created from python3 once and reused by later runs: a system
#   python3 under PEP 668 (Debian 12, Ubuntu 23.04 and later) refuses `pip install`.
# - Where `python3 -m venv` does not work (Debian/Ubuntu without python3-venv: no ensurepip), it installs
#   python3.X-venv with apt when running as root, or says in one line what to install and exits.

_vitnp_die() { echo "error: $*" >&2; exit 1; }

# True if the interpreter $1 runs and is Python >= 3.10.
_vitnp_py_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1; }

# True if .venv is usable: its python runs, is >= 3.10, and has pip (a half-made .venv has none).
_vitnp_venv_ok() { _vitnp_py_ok .venv/bin/python && .venv/bin/python -m pip --version >/dev/null 2>&1; }

# Creates .venv with the interpreter $1. On failure: removes the half-made .venv, keeps the error's last
# line in _vitnp_err, returns 1.
_vitnp_make_venv() {
    if _vitnp_err=$("$1" -m venv .venv 2>&1); then
        return 0
    fi
    case $_vitnp_err in
        *ensurepip*) _vitnp_err="ensurepip is not available" ;;
        *) _vitnp_err=$(printf '%s\n' "$_vitnp_err" | grep -v '^ *$' | tail -n 1) ;;
    esac
    rm -rf .venv
    return 1
}

PY=
if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
    PY=$VIRTUAL_ENV/bin/python
elif [ -n "${CONDA_PREFIX:-}" ] && [ -x "$CONDA_PREFIX/bin/python" ]; then
    PY=$CONDA_PREFIX/bin/python
else
    _vitnp_base=$(command -v python3) ||
        _vitnp_die "python3 not found: install Python >= 3.10 (Debian/Ubuntu: apt-get install python3 python3-venv)"
    _vitnp_py_ok "$_vitnp_base" ||
        _vitnp_die "$_vitnp_base is $("$_vitnp_base" -V 2>&1); vitnp needs Python >= 3.10"
    if "$_vitnp_base" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)'; then
        PY=$("$_vitnp_base" -c 'import sys; print(sys.executable)')
    else
        if ! _vitnp_venv_ok; then
            [ ! -e .venv ] || [ -f .venv/pyvenv.cfg ] ||
                _vitnp_die ".venv exists but is not a virtual environment: move it away and run again"
            rm -rf .venv
            echo "Creating the virtual environment .venv with $_vitnp_base ($("$_vitnp_base" -V 2>&1))"
            if ! _vitnp_make_venv "$_vitnp_base"; then
                _vitnp_ver=$("$_vitnp_base" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
                if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
                    echo "python3 -m venv does not work here ($_vitnp_err); installing python$_vitnp_ver-venv with apt"
                    apt-get update -qq
                    apt-get install -y -qq "python$_vitnp_ver-venv" >/dev/null ||
                        apt-get install -y -qq python3-venv >/dev/null ||
                        _vitnp_die "apt-get could not install python$_vitnp_ver-venv or python3-venv"
                    _vitnp_make_venv "$_vitnp_base" ||
                        _vitnp_die "$_vitnp_base -m venv .venv failed after installing python$_vitnp_ver-venv: $_vitnp_err"
                else
                    _vitnp_die "$_vitnp_base -m venv does not work: install python$_vitnp_ver-venv (Debian/Ubuntu: sudo apt-get install python$_vitnp_ver-venv) or activate a venv or conda environment, then run again"
                fi
            fi
            .venv/bin/python -m pip install -q --upgrade pip ||
                _vitnp_die "could not upgrade pip in .venv (pip needs to reach PyPI)"
        fi
        PY=$PWD/.venv/bin/python
        export VIRTUAL_ENV=$PWD/.venv
    fi
fi
_vitnp_py_ok "$PY" || _vitnp_die "$PY is not Python >= 3.10"
export PATH="$(dirname "$PY"):$PATH"      # `python`/`python3` in subprocesses are this interpreter too
echo "Python: $PY ($("$PY" -V 2>&1))"
