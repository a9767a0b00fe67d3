"""Errors raised by the task registry and the data loaders."""


class DataError(ValueError):
    """Bad or missing task data.

    Raised for an unknown task, a missing split file, a malformed line (no
    tab, non-integer label), a label outside ``0..k-1``, an empty text,
    invalid UTF-8, or a dataset that cannot be fetched. When the problem is
    in a file, the message names the file and the 1-based line number, e.g.
    ``/data/sst2/train.tsv, line 17: label 7 outside 0..1``.

    Attributes:
        path: the offending file, or None.
        line: the 1-based line number, or None.
    """

    def __init__(self, message, path=None, line=None):
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f", line {line}"
            where += ": "
        super().__init__(where + message)
        self.path = path
        self.line = line
