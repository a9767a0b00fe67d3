"""`ModelFileError`: the error of every model loader for a file or folder it cannot load."""


class ModelFileError(ValueError):
    """A model file or checkpoint folder that is corrupt, truncated, inconsistent or unsupported.

    Raised by the GGUF and Hugging Face loaders (and `tflm.models.config_values`).
    The message starts with the offending file or folder and names the
    metadata / config.json field or the tensor where there is one, e.g.
    ``/ckpt/config.json: field 'n_embd' must be a positive integer, got 'wide'``.
    A ValueError, so ``except ValueError`` (and the CLI) catch it.

    Attributes:
        path: the offending file or folder, or None.
        field: the config / metadata field or tensor name, or None.
    """

    def __init__(self, message, path=None, field=None):
        super().__init__(message if path is None else f"{path}: {message}")
        self.path = path
        self.field = field
