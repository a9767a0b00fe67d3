"""Quiet command line: TensorFlow's C++ log lines are hidden unless `--verbose`."""

import os
import subprocess
import sys

import pytest

from tflm import native_logs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Lines TensorFlow 2.21 writes while it is imported (copied from a terminal).
NATIVE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796140366.676215    7192 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results due to floating-point round-off errors from different computation orders.",
    "I0000 00:00:1796140366.676553    7192 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
    "GPU will not be used.",
    "E0000 00:00:1796140375.571785    7192 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error",
    "2025-09-17 14:44:05.157831: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] Could not find cuda drivers",
]
KEPT = [
    "F0000 00:00:1796140375.571785    7192 check.cc:1] Check failed: a fatal error stays visible",
    "Traceback (most recent call last):",
    "ValueError: I0000 is not a log line here",
    "Epoch 1/2",
]


def test_native_log_lines_are_recognised():
    assert all(native_logs.is_native_log_line(line) for line in NATIVE)
    assert not any(native_logs.is_native_log_line(line) for line in KEPT)


FILTER_SCRIPT = """
import os, sys
from tflm import native_logs
native, kept = {native!r}, {kept!r}
filt = native_logs._StderrFilter()
os.write(2, ("\\n".join(native[:3] + kept[:2] + native[3:] + kept[2:]) + "\\n").encode())
print("python stderr", file=sys.stderr)
os.write(2, b"\\r 10%|#  | bar\\r 20%|## | bar")  # a progress bar: no newline at the end
filt.close()
"""


def test_filter_drops_native_lines_written_to_fd_2_and_keeps_the_rest():
    # In a fresh process, as the command line runs it (pytest's own fd-2 capture is not in the way).
    script = FILTER_SCRIPT.format(native=NATIVE, kept=KEPT)
    out = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": REPO},
                         capture_output=True, timeout=60)  # bytes: keep the progress bar's "\r"
    err = out.stderr.decode()
    assert out.returncode == 0, err
    lines = err.splitlines()
    assert [line for line in lines if line in KEPT] == KEPT  # order kept, native lines gone
    assert not any(native_logs.is_native_log_line(line) for line in lines)
    assert "python stderr" in lines and err.endswith("\r 20%|## | bar")


def _cli(*args):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = REPO
    return subprocess.run([sys.executable, "-m", "tflm.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_cli_is_quiet_by_default_and_verbose_accepted():
    quiet = _cli("info", "tiny-gpt2")
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert quiet.stderr == "", quiet.stderr[-2000:]
    assert "tiny-gpt2" in quiet.stdout
    for args in (("--verbose", "info", "tiny-gpt2"), ("info", "tiny-gpt2", "--verbose")):
        loud = _cli(*args)
        assert loud.returncode == 0, loud.stderr[-2000:]
        assert loud.stdout == quiet.stdout
