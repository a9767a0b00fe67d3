"""TensorFlow's log output for the command line: quiet by default, everything with verbose.

TensorFlow's C++ libraries log from static initializers while `import
tensorflow` runs (oneDNN's "custom operations are on", "Could not find cuda
drivers", absl's "All log messages before absl::InitializeLog() ..."), before
`TF_CPP_MIN_LOG_LEVEL` takes effect, straight to file descriptor 2. Quiet mode
therefore imports TensorFlow with descriptor 2 pointing at a temporary file
and copies back every line that is not such a log line. `TF_ENABLE_ONEDNN_OPTS`
is never touched (it changes numerics and speed); only its message is hidden.
"""

import logging
import os
import re
import sys

# glog / absl prefixes: "I0000 00:00:1796140366.676215    7192 port.cc:153] ..." and
# "2025-09-17 14:44:05.157831: I external/.../cudart_stub.cc:32] ...". Fatal (F) lines are kept.
NATIVE_LOG_LINE = re.compile(
    r"^(?:[IWE]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] "
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] \S+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$)"
)


# What the start of a native log line can look like (see NATIVE_LOG_LINE).
_NATIVE_PREFIX = re.compile(r"^(?:[IWE]\d{0,4}(?: [\d:.]*)?(?:\s+\d*)?$|[IWE]\d{4} |\d{1,4}(?:-[\d -:.]*)?$|\d{4}-|WARNING)")


def is_native_log_line(line):
    """True for a line TensorFlow's C++ logging (glog / absl format, not FATAL) writes."""
    return NATIVE_LOG_LINE.match(line) is not None


class _StderrFilter:
    """For the rest of the process, fd 2 is a pipe; a thread copies its non-native lines to the real stderr.

    TensorFlow logs natively not only while it is imported: libraries it loads later (the first op of a
    kind, keras-hub's text ops) print the same "oneDNN custom operations" / CUDA lines again, straight
    to file descriptor 2. At exit the pipe is closed and drained, so the last lines (a traceback) survive.
    """

    def __init__(self):
        import threading

        sys.stderr.flush()
        self.real = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self.reader = os.fdopen(read, "rb")
        self.thread = threading.Thread(target=self._copy, name="tflm-stderr-filter", daemon=True)
        self.thread.start()

    def _copy(self):
        """Copies fd-2 output through, dropping native log lines.

        Pieces end at "\n" or "\r" (progress bars redraw with "\r"); an unfinished piece is held
        back only while it could still become a native log line, so a progress bar shows at once.
        """
        pending = b""
        while True:
            chunk = os.read(self.reader.fileno(), 65536)
            if not chunk:
                break
            pending += chunk
            pieces = re.split(rb"(?<=[\r\n])", pending)
            pending = pieces.pop()
            for piece in pieces:
                self._emit(piece)
            if pending and not _NATIVE_PREFIX.match(pending.decode("utf-8", errors="replace")):
                os.write(self.real, pending)
                pending = b""
        if pending:
            self._emit(pending)

    def _emit(self, piece):
        if not is_native_log_line(piece.decode("utf-8", errors="replace").rstrip("\r\n")):
            os.write(self.real, piece)

    def close(self):
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self.real, 2)  # the pipe's last write end closes: the reader sees EOF
        self.thread.join(timeout=5)


_FILTER = None


def configure(verbose=False, filter_stderr=True):
    """Sets TensorFlow's log levels and imports TensorFlow (quietly unless `verbose`).

    Quiet mode with `filter_stderr` filters TensorFlow's native log lines out of fd 2 for the rest
    of the process (`_StderrFilter`; the command line does this, an in-process caller need not have
    its fd 2 replaced). Call before anything imports TensorFlow; afterwards only the Python-side
    levels (TensorFlow's logger, absl) still change.
    """
    global _FILTER
    import atexit

    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0" if verbose else "3"
    level = logging.INFO if verbose else logging.ERROR
    if filter_stderr and not verbose and _FILTER is None:
        _FILTER = _StderrFilter()
        atexit.register(_FILTER.close)
    import tensorflow as tf

    tf.get_logger().setLevel(level)
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO if verbose else absl_logging.ERROR)
