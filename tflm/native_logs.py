"""TensorFlow's log output for the command line: quiet by default, everything with verbose.

TensorFlow's C++ libraries log from static initializers while `import
tensorflow` runs (oneDNN's "custom operations are on", "Could not find cuda
drivers", absl's "All log messages before absl::InitializeLog() ..."), before
`TF_CPP_MIN_LOG_LEVEL` takes effect, straight to file descriptor 2. Quiet mode
therefore imports TensorFlow with descriptor 2 pointing at a temporary file
and copies back every line that is not such a log line. `TF_ENABLE_ONEDNN_OPTS`
is never touched (it changes numerics and speed); only its message is hidden.
"""

import contextlib
import logging
import os
import re
import sys
import tempfile

# glog / absl prefixes: "I0000 00:00:1796140366.676215    7192 port.cc:153] ..." and
# "2025-09-17 14:44:05.157831: I external/.../cudart_stub.cc:32] ...". Fatal (F) lines are kept.
NATIVE_LOG_LINE = re.compile(
    r"^(?:[IWE]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] "
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] \S+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$)"
)


def is_native_log_line(line):
    """True for a line TensorFlow's C++ logging (glog / absl format, not FATAL) writes."""
    return NATIVE_LOG_LINE.match(line) is not None


@contextlib.contextmanager
def _native_stderr_filtered():
    """Runs the body with fd 2 redirected to a file, then replays the lines that are not native logs."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if not is_native_log_line(line.rstrip("\n"))]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def configure(verbose=False):
    """Sets TensorFlow's log levels and imports TensorFlow (quietly unless `verbose`).

    Call before anything imports TensorFlow; afterwards only the Python-side
    levels (TensorFlow's logger, absl) still change.
    """
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0" if verbose else "3"
    level = logging.INFO if verbose else logging.ERROR
    if "tensorflow" in sys.modules or verbose:
        import tensorflow as tf
    else:
        with _native_stderr_filtered():
            import tensorflow as tf
    tf.get_logger().setLevel(level)
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO if verbose else absl_logging.ERROR)
