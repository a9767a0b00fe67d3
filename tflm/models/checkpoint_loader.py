"""`CheckpointLoader`: keras-hub's weight-loader protocol, shared by the Hugging Face and GGUF loaders."""

import numpy as np

from tflm.models.errors import ModelFileError


class CheckpointLoader:
    """Ports checkpoint tensors into Keras variables, as keras-hub's converters ask.

    keras-hub's `convert_weights(backbone, loader, config)` calls
    ``loader.port_weight(keras_variable, hf_weight_key, hook_fn)`` with
    Hugging Face tensor names. Subclasses implement `get(key)` (a numpy array,
    recording the tensor as used in `used`) and may rename a key for messages
    (`tensor_name`). There is deliberately no `get_tensor`: keras-hub's
    `convert_gemma3._resolve_prefix` probes it (dequantizing the 262,144-row
    embedding once more on GGUF) and falls back to the ``model.`` names that
    both loaders resolve. A shape that does not match the variable is an error
    naming `source` and the tensor, never a silent reshape.

    Args:
        source: the file or folder the tensors come from (for messages).
        mismatch_hint: appended to shape-mismatch errors.
    """

    def __init__(self, source, mismatch_hint=""):
        self.source = source
        self.mismatch_hint = mismatch_hint
        self.used = set()

    def get(self, key):
        raise NotImplementedError

    def tensor_name(self, key):
        return key

    def port_weight(self, keras_variable, hf_weight_key, hook_fn=None):
        tensor = self.get(hf_weight_key)
        name = self.tensor_name(hf_weight_key)
        if hook_fn is not None:
            try:
                tensor = hook_fn(tensor, list(keras_variable.shape))
            except ValueError as e:  # e.g. a fused q/k/v tensor that does not split in three
                raise ModelFileError(f"tensor {name!r} of shape {tuple(tensor.shape)} does not fit the backbone "
                                     f"({e}){self.mismatch_hint}", self.source, name) from None
        if tuple(tensor.shape) != tuple(keras_variable.shape):
            raise ModelFileError(
                f"tensor {name!r} has shape {tuple(tensor.shape)}, "
                f"the backbone expects {tuple(keras_variable.shape)}{self.mismatch_hint}", self.source, name
            )
        keras_variable.assign(np.asarray(tensor, dtype=keras_variable.dtype))  # no copy when the dtype matches
