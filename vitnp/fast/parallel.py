"""Use every core: run a large batch as shards in threads, and keep NumPy's memory allocator quiet.

NumPy runs each elementwise operation (GELU, LayerNorm, softmax, the residual adds …) on one core; only matrix
products use several, through the BLAS library.  The ViT treats every image on its own except where the parameter
gradients are summed over the batch, so :func:`vitnp.fast.vit_forward` can cut a batch of B images into shards (two
per thread by default), run the forward and backward of each shard on a pool of ``threads`` threads, concatenate the
logits and add up the shards' gradients.  NumPy releases Python's global lock inside every ufunc and matmul, so the
shards really run side by side. While they run, the BLAS library is set to one thread (two shards each asking for
two BLAS threads would put four busy threads on two cores); it is restored afterwards.  The result equals the
unsharded computation up to float rounding (the order in which the batch's gradient terms are added), see
``tests/test_fast.py``.

Sharding is used only when it is safe and worth it: the BLAS thread count can be controlled (OpenBLAS,
which NumPy's wheels ship), more than one thread is configured, the batch has at least 2 × ``min_rows`` token
rows (it is cut into at most rows ÷ ``min_rows`` shards of whole images, so a shard has about ``min_rows``
rows or more), and no dropout is drawn (a shard would draw different random masks than the
whole batch, and runs must be reproducible from a seed).

The second lever is glibc's ``malloc``: by default a freed array of more than a few hundred KiB goes
back to the kernel and the next one is page-faulted in again, page by page (≈ 11,000 faults per
training step of the ``base28`` benchmark model).  :func:`tune_malloc` raises the mmap and trim
thresholds with ``mallopt`` (through ctypes, only where glibc is present), and keeps all threads on the
main heap, so such buffers are reused.

How many threads: by default as many as the BLAS library uses (OpenBLAS starts with one per core, and
``OPENBLAS_NUM_THREADS`` or ``openblas_set_num_threads`` change it), so one setting says how many cores
vitnp may use, for matrix products and for everything else alike.

Settings (all optional)::

    VITNP_THREADS=1          no sharding (default: the BLAS library's thread count)
    VITNP_MALLOC_TUNING=0    leave malloc as it is (default: tuned on the first forward pass)

or in code: ``vitnp.fast.parallel.configure(threads=…, malloc_tuning=…)``.  The reference model
(:func:`vitnp.vit_forward`) uses none of this.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["configure", "num_threads", "layout", "shard_slices", "run_shards", "blas_threads", "set_blas_threads",
           "blas_info", "tune_malloc"]

_MIN_ROWS = 1024                    # token rows (images × T) below which a shard is not worth a thread
_lock = threading.Lock()
_SHARDS_PER_THREAD = 2             # more shards than threads: a thread that finishes early takes the next one
_settings = {"threads": None, "malloc_tuning": None, "min_rows": _MIN_ROWS, "shards_per_thread": _SHARDS_PER_THREAD}
_pool = None                        # ThreadPoolExecutor, made on first use
_blas = None                        # (get, set) ctypes functions, False if not found
_blas_lib = None                    # the ctypes.CDLL of that OpenBLAS (bench reads its version and kernel)
_malloc_done = False


def _env_int(name, default):
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if n < 0:
        raise ValueError(f"{name} must be >= 0, got {n}")
    return n


def configure(*, threads: int | None = None, malloc_tuning: bool | None = None,
              min_rows: int | None = None, shards_per_thread: int | None = None) -> dict:
    """Change the settings (None leaves one as it is); returns the settings now in force.

    threads : number of shards, and threads, for large batches; 1 turns sharding off.
    malloc_tuning : False keeps glibc's malloc defaults (must be set before the first forward pass).
    min_rows : the smallest shard, in token rows (images × tokens), worth a thread of its own.
    shards_per_thread : shards queued per thread; more than one balances the load when another
        program takes part of a core (a static split waits for the slowest thread).
    """
    for name, value in (("threads", threads), ("min_rows", min_rows), ("shards_per_thread", shards_per_thread)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if threads is not None:
        _settings["threads"] = threads
    if min_rows is not None:
        _settings["min_rows"] = min_rows
    if shards_per_thread is not None:
        _settings["shards_per_thread"] = shards_per_thread
    if malloc_tuning is not None:
        _settings["malloc_tuning"] = bool(malloc_tuning)
    return {"threads": num_threads(), "malloc_tuning": _malloc_tuning_on(), "min_rows": _settings["min_rows"],
            "shards_per_thread": _settings["shards_per_thread"], "blas_control": _blas_functions() is not None}


def num_threads() -> int:
    """Threads (= pool size) for a large batch: configure(threads=…), else $VITNP_THREADS, else as many
    as the BLAS library is set to use (``OPENBLAS_NUM_THREADS``, or ``openblas_set_num_threads`` — one
    knob for how many cores vitnp may use), else 1."""
    if _settings["threads"] is not None:
        return _settings["threads"]
    n = _env_int("VITNP_THREADS", 0)
    if n:
        return n
    fns = _blas_functions()
    return max(1, fns[0]()) if fns is not None else 1


def layout() -> dict:
    """What fixes how a batch is cut into shards (:func:`shard_slices`), and so the order of the sums of a
    sharded step: {'threads', 'shards_per_thread', 'min_rows'}.  A run resumed with another layout is not
    bit-exact (float32 sums in another order); the trainer saves it and restores it on resume."""
    return {"threads": num_threads(), "shards_per_thread": _settings["shards_per_thread"],
            "min_rows": _settings["min_rows"]}


def shard_slices(batch: int, tokens: int) -> list:
    """Split range(batch) into contiguous slices for the threads; [slice(0, batch)] when not worth it."""
    threads = num_threads()
    n = min(threads * _settings["shards_per_thread"], batch * tokens // _settings["min_rows"], batch)
    if threads <= 1 or n <= 1 or _blas_functions() is None:
        return [slice(0, batch)]
    bounds = [batch * i // n for i in range(n + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def run_shards(fn, items) -> list:
    """[fn(item) for item in items] on num_threads() pool threads, with BLAS at one thread meanwhile."""
    global _pool
    items = list(items)
    if len(items) == 1:
        return [fn(items[0])]
    workers = num_threads()
    with _lock:
        if _pool is None or _pool._max_workers != workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vitnp")
        pool = _pool
    with blas_threads(1):
        return list(pool.map(fn, items))


# ---- BLAS threads ----------------------------------------------------------------------------------
def _blas_functions():
    """(get_num_threads, set_num_threads) of the OpenBLAS inside this NumPy, or None."""
    global _blas, _blas_lib
    if _blas is None:
        _blas = False
        try:
            with open("/proc/self/maps") as f:
                paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line})
        except OSError:
            paths = []
        for path in paths:
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for prefix, suffix in (("scipy_openblas", "64_"), ("scipy_openblas", ""), ("openblas", "64_"),
                                   ("openblas", "")):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and set_ is not None:
                    get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
                    _blas, _blas_lib = (get, set_), lib
                    break
            if _blas:
                break
    return _blas or None


def blas_info() -> dict:
    """NumPy's BLAS: library, version, kernel (the core type it runs) and threads, from threadpoolctl when it
    is installed, else from OpenBLAS's own ``openblas_get_config``/``openblas_get_corename`` (ctypes)."""
    try:
        from threadpoolctl import threadpool_info
        for lib in threadpool_info():
            if lib.get("user_api") == "blas":
                return {"library": lib.get("internal_api"), "version": lib.get("version"),
                        "kernel": lib.get("architecture"), "threads": lib.get("num_threads"),
                        "threading_layer": lib.get("threading_layer"), "source": "threadpoolctl"}
    except ImportError:
        pass
    fns = _blas_functions()
    if fns is None:
        return {"library": "unknown (not OpenBLAS, or not found)", "source": "none"}
    lib = _blas_lib
    out = {"library": "openblas", "threads": fns[0](), "source": "ctypes"}
    for key, names in (("version", ("scipy_openblas_get_config64_", "openblas_get_config64_", "openblas_get_config")),
                       ("kernel", ("scipy_openblas_get_corename64_", "openblas_get_corename64_",
                                   "openblas_get_corename"))):
        for n in names:
            fn = getattr(lib, n, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                out[key] = fn().decode(errors="replace")
                break
    return out


_blas_users = []                    # [(n, count before the first of them)] while blas_threads blocks are open


@contextlib.contextmanager
def blas_threads(n: int):
    """Within the block, OpenBLAS uses ``n`` threads (a no-op where it cannot be controlled).

    Blocks may overlap (two threads each running a sharded batch): the count found by the first is
    restored when the last one leaves.
    """
    fns = _blas_functions()
    if fns is None:
        yield
        return
    get, set_ = fns
    with _lock:
        _blas_users.append((n, get() if not _blas_users else _blas_users[0][1]))
        set_(n)
    try:
        yield
    finally:
        with _lock:
            _, before = _blas_users.pop()
            set_(_blas_users[-1][0] if _blas_users else before)


def set_blas_threads(n: int) -> bool:
    """Use ``n`` OpenBLAS threads from now on; True if it worked, False where BLAS cannot be controlled.

    OpenBLAS reads ``OPENBLAS_NUM_THREADS`` only when NumPy is imported; this calls its
    ``openblas_set_num_threads`` (whatever the symbol prefix of the bundled build) through ctypes.  It also
    sets the default number of shard threads (:func:`num_threads`), so ``--threads N`` is one knob for the
    cores vitnp may use.  On a busy machine one thread can be several times faster than two that wait for
    each other.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be a positive integer, got {n!r}")
    fns = _blas_functions()
    if fns is None:
        return False
    fns[1](n)
    return True


# ---- malloc ----------------------------------------------------------------------------------------
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8   # glibc <malloc.h>
_MMAP_THRESHOLD = 32 << 20                            # arrays up to 32 MiB come from the reusable heap
_TRIM_THRESHOLD = 256 << 20                           # keep up to 256 MiB of freed heap for reuse


def _malloc_tuning_on() -> bool:
    if _settings["malloc_tuning"] is not None:
        return _settings["malloc_tuning"]
    return _env_int("VITNP_MALLOC_TUNING", 1) != 0


def tune_malloc() -> bool:
    """Raise glibc's mmap and trim thresholds once (unless switched off); True if they are set.

    Large NumPy arrays are otherwise mmap-ed on allocation and unmapped when freed, so each training
    step page-faults all of its activations in again.  Held memory is bounded by the trim threshold.
    One arena for all threads: the shard threads' own arenas would be mmap-ed heaps of at most 64 MiB,
    created and unmapped again as a step's activations come and go.
    """
    global _malloc_done
    if _malloc_done or not _malloc_tuning_on():
        return _malloc_done
    with _lock:
        if not _malloc_done:
            path = ctypes.util.find_library("c")
            try:
                libc = ctypes.CDLL(path) if path else None
                mallopt = getattr(libc, "mallopt", None)
            except OSError:
                mallopt = None
            if mallopt is not None:
                ok = (mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
                      and mallopt(_M_ARENA_MAX, 1))           # shard threads share the one reused heap
                _malloc_done = bool(ok)
            _settings["malloc_tuning"] = _malloc_done or False
    return _malloc_done
