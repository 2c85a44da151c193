"""Keep TensorFlow's C++ start-up log lines out of the `vhrmodel` command line's output.

TensorFlow prints lines such as

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1700000000.000000   123 port.cc:153] oneDNN custom operations are on. ...
    E0000 00:00:1700000000.000000   123 ... DT_BOOL only on platforms with AVX-512 ...

straight to file descriptor 2 from C++. Some come before `TF_CPP_MIN_LOG_LEVEL` is read, so
an environment variable alone does not stop them. The CLI therefore does two things before any
command imports Keras (`silence_tensorflow`):

1. it sets `TF_CPP_MIN_LOG_LEVEL=3`, `GRPC_VERBOSITY=ERROR` and `GLOG_minloglevel=3` unless the
   user set them (`TF_ENABLE_ONEDNN_OPTS` is left alone: it changes numerics, not logging);
2. it points descriptor 2 at a pipe and forwards everything to the real stderr except lines in
   absl's log format (`I0000 …`, `W0000 …`, `E0000 …`; fatal `F` lines pass), the absl
   "InitializeLog" warning and the CPU-instructions note that follows TensorFlow's feature guard.

This module is for the CLI only: a library user who imports `vhrmodel` gets TensorFlow as it
is. `vhrmodel -v …` or `VHR_TF_LOGS=1` leaves everything as it is.
"""

from __future__ import annotations

import atexit
import io
import os
import re
import sys
import threading

ENV_SHOW = "VHR_TF_LOGS"

QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR", "GLOG_minloglevel": "3"}

# absl/glog's prefix: level letter, MMDD, time, thread id, file:line]
_ABSL_LINE = re.compile(rb"^[IWE]\d{4} [\d:.]+\s+\d+ [^\s\]]+:\d+\]")
_DROPPED = (
    _ABSL_LINE,
    re.compile(rb"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"),
    re.compile(rb"^To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\."),
)
_ABSL_WARNING = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_CPU_NOTE = b"To enable the following instructions: "


def _may_become_noise(partial: bytes) -> bool:
    """Whether an unfinished line could still turn out to be dropped (so it is held back)."""
    if re.match(rb"^[IWE]\d{0,4}$", partial) or re.match(rb"^[IWE]\d{4} ", partial):
        return True
    return any(fixed.startswith(partial) or partial.startswith(fixed) for fixed in (_ABSL_WARNING, _CPU_NOTE))


_installed: "_StderrFilter | None" = None


def is_tensorflow_noise(line: bytes) -> bool:
    """Whether one stderr line (without its line end) is a TensorFlow/absl log line the CLI drops."""
    return any(p.match(line) for p in _DROPPED)


def wants_tensorflow_logs(verbose: int = 0) -> bool:
    """True when the user asked to see TensorFlow's own log lines (-v or VHR_TF_LOGS=1)."""
    return verbose > 0 or os.environ.get(ENV_SHOW, "").strip().lower() not in ("", "0", "false", "no")


class _StderrFilter:
    """Descriptor 2 → pipe → thread → the original stderr, minus TensorFlow's log lines.

    Python's own `sys.stderr` is pointed straight at the original stderr, so click's progress
    bars still see a terminal (and draw), and Python's messages are never delayed or reordered;
    only what C++ (or a child process) writes to descriptor 2 goes through the filter.
    """

    def __init__(self):
        self.saved = os.dup(2)
        read_fd, write_fd = os.pipe()
        self.read_fd = read_fd
        self.python_stderr = sys.stderr
        self.python_stderr.flush()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        sys.stderr = io.TextIOWrapper(io.FileIO(self.saved, "w", closefd=False),
                                      encoding=getattr(self.python_stderr, "encoding", None) or "utf-8",
                                      errors="backslashreplace", line_buffering=True, write_through=True)
        self.thread = threading.Thread(target=self._pump, name="vhr-stderr-filter", daemon=True)
        self.thread.start()

    def _write(self, data: bytes) -> None:
        while data:
            try:
                n = os.write(self.saved, data)
            except OSError:
                return
            data = data[n:]

    def _pump(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self.read_fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            pending += chunk
            out = []
            # \r ends a segment too: progress bars redraw with it and must show at once.
            while True:
                m = re.search(rb"[\r\n]", pending)
                if m is None:
                    break
                end = m.end()
                if pending[m.start():m.start() + 2] == b"\r\n":
                    end += 1
                segment, pending = pending[:end], pending[end:]
                if not is_tensorflow_noise(segment.rstrip(b"\r\n")):
                    out.append(segment)
            if pending and not _may_become_noise(pending):
                out.append(pending)
                pending = b""
            if out:
                self._write(b"".join(out))
        if pending and not is_tensorflow_noise(pending):
            self._write(pending)
        os.close(self.read_fd)

    def close(self) -> None:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        sys.stderr = self.python_stderr
        os.dup2(self.saved, 2)  # closes the pipe's last write end: the thread sees EOF
        self.thread.join(timeout=2)
        os.close(self.saved)


def silence_tensorflow(verbose: int = 0) -> bool:
    """Quiet TensorFlow's C++ logging for this process; call before TensorFlow is imported.

    Does nothing when `wants_tensorflow_logs(verbose)`. The descriptor filter is only installed
    when `sys.stderr` writes to descriptor 2 (not under `click.testing.CliRunner`, say), once.

    Returns:
        whether TensorFlow's logs are being silenced.
    """
    global _installed
    if wants_tensorflow_logs(verbose):
        return False
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    if _installed is None and "tensorflow" not in sys.modules:
        try:
            real_fd2 = sys.stderr is not None and sys.stderr.fileno() == 2
        except (AttributeError, OSError, ValueError):
            real_fd2 = False
        if real_fd2:
            try:
                _installed = _StderrFilter()
            except OSError:
                return True
            atexit.register(_uninstall)
    return True


def _uninstall() -> None:
    global _installed
    if _installed is not None:
        _installed.close()
        _installed = None
