"""Keep a native library from leaving the calling thread with a dangling alternate signal stack.

Why this exists (see docs/architecture.md, "Runtimes in one process"): OpenVINO's CPU plugin
(2026.4) gives every compiled model an alternate signal stack of its own. Compiling installs a
fresh `mmap`ed stack with `sigaltstack` on the compiling thread and remembers the one it replaced;
destroying the compiled model puts the remembered one back and unmaps its own. That is only right
when compiled models die in the reverse order of their creation. When model A is compiled, then B,
then A is freed, then B, the thread ends up with A's stack, which is already unmapped. The next
signal whose handler asks for the alternate stack (`SA_ONSTACK`: every handler Python installs,
faulthandler's, torch's SIGCHLD handler of its data-loader workers) cannot be delivered, and the
kernel kills the process with SIGSEGV (`si_code` SI_KERNEL, no Python frame), possibly long after
the OpenVINO work is done.

`preserved_signal_stack()` restores the thread's alternate stack as it was, so the plugin's stack is
never the installed one: whatever order compiled models are freed in, each restores the stack that
was current when it was compiled, which is still the thread's own.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
from collections.abc import Iterator


class _StackT(ctypes.Structure):
    # struct stack_t of Linux/glibc: void *ss_sp; int ss_flags; size_t ss_size.
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc()


def signal_stack() -> tuple[int, int, int] | None:
    """The calling thread's alternate signal stack as (address, size, flags); None off Linux."""
    if _LIBC is None:
        return None
    current = _StackT()
    if _LIBC.sigaltstack(None, ctypes.byref(current)) != 0:
        return None
    return (current.ss_sp or 0, current.ss_size, current.ss_flags)


@contextlib.contextmanager
def preserved_signal_stack() -> Iterator[None]:
    """On exit, put back the alternate signal stack the calling thread had on entry (Linux; elsewhere a no-op)."""
    if _LIBC is None:
        yield
        return
    saved = _StackT()
    if _LIBC.sigaltstack(None, ctypes.byref(saved)) != 0:
        yield
        return
    try:
        yield
    finally:
        # SS_ONSTACK is a read-only state flag; the kernel rejects it in a new setting.
        saved.ss_flags &= ~1
        _LIBC.sigaltstack(ctypes.byref(saved), None)


__all__ = ["preserved_signal_stack", "signal_stack"]
