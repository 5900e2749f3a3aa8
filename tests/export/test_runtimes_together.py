"""Every runtime loaded in one process, then training: the order that used to kill pytest with SIGSEGV.

OpenVINO's CPU plugin swapped the thread's alternate signal stack per compiled model and left it
dangling when models were freed out of order; the next signal with an SA_ONSTACK handler killed the
process (utils/signals.py). These tests run that order, in a subprocess so that a regression fails
one test instead of the whole run.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap

import pytest

from efficientformer.utils.signals import preserved_signal_stack, signal_stack

pytestmark = pytest.mark.export

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sigaltstack is checked on Linux")


@linux_only
def test_preserved_signal_stack_puts_the_old_stack_back():
    before = signal_stack()
    buffer = ctypes.create_string_buffer(1 << 16)

    class StackT(ctypes.Structure):
        _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]

    libc = ctypes.CDLL(None)
    with preserved_signal_stack():
        new = StackT(ctypes.cast(buffer, ctypes.c_void_p), 0, len(buffer))
        assert libc.sigaltstack(ctypes.byref(new), None) == 0
        assert signal_stack()[0] == ctypes.addressof(buffer)
    assert signal_stack() == before


@linux_only
def test_openvino_runners_freed_out_of_order_leave_the_signal_stack_alone(tmp_path):
    pytest.importorskip("openvino", reason="openvino is not installed")
    script = textwrap.dedent(f"""
        import gc
        import numpy as np
        import efficientformer
        from efficientformer.export.openvino import check_openvino_parity, export_openvino, load_runner
        from efficientformer.utils.signals import signal_stack

        model = efficientformer.create_model("efficientformerv2_test").eval()
        path = export_openvino(model, {str(tmp_path / "tiny.xml")!r}, img_size=64).path
        start = signal_stack()
        first, second = load_runner(path, num_threads=1), load_runner(path, num_threads=1)
        first(np.zeros((1, 3, 64, 64), np.float32)); second(np.zeros((2, 3, 64, 64), np.float32))
        check_openvino_parity(model, path)
        del first; gc.collect()   # freed in creation order, not the reverse
        del second; gc.collect()
        assert signal_stack() == start, (start, signal_stack())
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-X", "faulthandler", "-c", script], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]


@linux_only
def test_export_to_every_runtime_then_train_with_workers_and_subprocesses(tmp_path):
    """A user's script: export and check on each installed runtime, then train with loader workers."""
    pytest.importorskip("sklearn", reason="the embedded dataset needs scikit-learn")
    script = textwrap.dedent(f"""
        import gc, importlib.util, os, signal, subprocess, sys
        import efficientformer
        from efficientformer.export import export_model
        from efficientformer.train.job import TrainJob, run_training
        from efficientformer.train.recipes import get_recipe

        model = efficientformer.create_model("efficientformerv2_test").eval()
        folder = {str(tmp_path)!r}
        for fmt, package, suffix in (("onnx", "onnxruntime", ".onnx"), ("executorch", "executorch", ".pte"),
                                     ("openvino", "openvino", ".xml"), ("openvino", "openvino", ".xml")):
            if importlib.util.find_spec(package) is not None:
                export_model(model, os.path.join(folder, fmt + str(len(os.listdir(folder))) + suffix), fmt, img_size=64)
        if importlib.util.find_spec("openvino") is not None:
            from efficientformer.export.openvino import load_runner
            paths = sorted(p for p in os.listdir(folder) if p.endswith(".xml"))
            runners = [load_runner(os.path.join(folder, p)) for p in paths]
            runners.pop(0); gc.collect(); runners.clear(); gc.collect()
        recipe = get_recipe("default").replace(epochs=1, warmup_epochs=0, batch_size=32)
        run_training(TrainJob(output={str(tmp_path / "run")!r}, model="efficientformerv2_test", recipe=recipe,
                              num_workers=2, max_steps=2))
        subprocess.run([sys.executable, "-c", "pass"], check=True)    # SIGCHLD with torch's handler installed
        signal.signal(signal.SIGUSR1, lambda *args: print("signal delivered"))
        os.kill(os.getpid(), signal.SIGUSR1)
        print("ok")
    """)
    env = {**os.environ, "EFFICIENTFORMER_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-X", "faulthandler", "-c", script], capture_output=True, text=True,
                            timeout=600, env=env)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr[-3000:]}"
    assert "signal delivered" in result.stdout and result.stdout.rstrip().endswith("ok")
