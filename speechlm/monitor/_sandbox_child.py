"""The sandbox child: run one rule over a batch of series, then exit.

Started by ``speechlm.monitor.sandbox`` as ``python -I <this file>``; it never imports
speechlm. Protocol (binary pipes):

- stdin: one JSON line ``{"source", "cpu_s", "memory_bytes", "check_ast", "n"}``, then
  ``n`` pairs of ``.npy`` arrays (values, timestamps), both float64 (T,).
- fd 1 as it was at start (the rule's own prints go to /dev/null): one JSON line
  ``{"ok": true, "cpu_s"}`` and ``n`` boolean ``.npy`` arrays, or
  ``{"ok": false, "kind", "error"}``.

Order matters: read the input and import numpy first, then drop privileges (uid nobody
when started as root), then set the limits (no new processes, no new files, no file
writes, CPU seconds, address space), then compile and run the rule with a builtins table
that holds only ``SAFE_BUILTINS`` and an import that admits only numpy.
"""

import builtins
import io
import json
import os
import resource
import sys
import traceback


def _load_policy():
    # By path: the child runs isolated (``python -I``) and never imports speechlm.
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sandbox_policy.py")
    spec = importlib.util.spec_from_file_location("_sandbox_policy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


policy = _load_policy()
import numpy as np  # noqa: E402

# Submodules numpy loads on first use; loaded now, because once the limits are set no file
# (a module's source included) can be opened.
import numpy.fft  # noqa: E402, F401
import numpy.linalg  # noqa: E402, F401
import numpy.ma  # noqa: E402, F401
import numpy.polynomial  # noqa: E402, F401
import numpy.random  # noqa: E402, F401

NOBODY = 65534


def _vm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


# numpy's C functions import lazily (np.median -> numpy._core._methods) through the
# builtins of the calling frame, i.e. the rule's: admit numpy's own submodules and the
# few pure stdlib modules numpy loads that way. The rule's own imports are held to
# ``import numpy`` by the AST check.
_RUNTIME_IMPORTS = ("numpy", "warnings", "math", "operator", "functools", "itertools",
                    "collections", "numbers", "contextlib")


def _guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level != 0 or name.split(".")[0] not in _RUNTIME_IMPORTS:
        raise ImportError(f"import of {name!r} is not allowed in a rule (only numpy)")
    return builtins.__import__(name, globals, locals, fromlist, level)


def _lock_down(cpu_s: float, memory_bytes: int, out_fd: int) -> None:
    if os.geteuid() == 0:  # RLIMIT_NPROC does not bind root: become nobody first
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
        except PermissionError:  # a root without CAP_SETUID: the other limits still hold
            pass
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    cpu = max(1, int(cpu_s + 0.999))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (_vm_bytes() + memory_bytes,) * 2)
    # No new file descriptors: every number below the limit is taken (0, 1, 2, out_fd).
    resource.setrlimit(resource.RLIMIT_NOFILE, (out_fd + 1, out_fd + 1))


def _where(tb) -> str:
    lines = [f.lineno for f in traceback.extract_tb(tb) if f.filename == "<rule>"]
    return f" (rule line {lines[-1]})" if lines else ""


def main() -> int:
    # The result channel is a private copy of stdout; fd 1 becomes /dev/null for prints.
    out_fd = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)
    if out_fd != 3:  # make fds 0..3 the only ones, so RLIMIT_NOFILE = 4 blocks new ones
        os.dup2(out_fd, 3)
        os.close(out_fd)
        out_fd = 3
    out = os.fdopen(out_fd, "wb")
    stdin = io.BytesIO(sys.stdin.buffer.read())  # read_array wants a seekable file
    header = json.loads(stdin.readline())
    series = [(np.lib.format.read_array(stdin, allow_pickle=False),
               np.lib.format.read_array(stdin, allow_pickle=False))
              for _ in range(header["n"])]

    def fail(kind: str, error: str) -> int:
        out.write((json.dumps({"ok": False, "kind": kind, "error": error[:2000]}) + "\n")
                  .encode())
        out.flush()
        return 0

    if header.get("check_ast", True):
        reasons = policy.check_source(header["source"])
        if reasons:
            return fail("rejected", "; ".join(reasons))
    _lock_down(header["cpu_s"], header["memory_bytes"], out_fd)
    safe = {n: getattr(builtins, n) for n in policy.SAFE_BUILTINS}
    safe["__import__"] = _guarded_import
    scope = {"__builtins__": safe, "__name__": "rule"}
    masks = []
    try:
        exec(compile(header["source"], "<rule>", "exec"), scope)
        detect = scope.get("detect")
        if not callable(detect):
            return fail("bad_output", "the rule defines no callable 'detect'")
        for i, (values, timestamps) in enumerate(series):
            got = detect(values.copy(), timestamps.copy())
            mask = np.asarray(got)
            if mask.shape != values.shape:
                return fail("bad_output", f"series {i}: detect returned shape {mask.shape}, "
                                          f"expected {values.shape}")
            if mask.dtype != np.bool_:
                if mask.dtype.kind not in "biuf" or not np.isin(mask, (0, 1)).all():
                    return fail("bad_output", f"series {i}: detect returned dtype "
                                              f"{mask.dtype}; expected bool (or only 0/1)")
                mask = mask.astype(np.bool_)
            masks.append(np.ascontiguousarray(mask))
    except MemoryError:
        return fail("memory", "MemoryError: the rule went over its memory limit")
    except RecursionError as e:
        return fail("exception", f"RecursionError: {e}{_where(e.__traceback__)}")
    except BaseException as e:  # noqa: BLE001 (anything the rule raises is its result)
        return fail("exception", f"{type(e).__name__}: {e}{_where(e.__traceback__)}")
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    out.write((json.dumps({"ok": True, "cpu_s": cpu.ru_utime + cpu.ru_stime}) + "\n").encode())
    buf = io.BytesIO()  # write_array on a real file dup()s the fd, which NOFILE forbids
    for mask in masks:
        np.lib.format.write_array(buf, mask, allow_pickle=False)
    out.write(buf.getvalue())
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
