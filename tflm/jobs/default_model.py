"""The shipped default models (`saved_models/`), found by name for the jobs that default to them."""

import os


def saved_models_dir():
    """The repository's saved_models/ (or $TFLM_SAVED_MODELS)."""
    env = os.environ.get("TFLM_SAVED_MODELS")
    if env:
        return env
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "saved_models"))


def default_model(name):
    """The folder of the shipped default model `name` (FileNotFoundError saying how to get it)."""
    path = os.path.join(saved_models_dir(), name)
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"shipped default model {name!r} not found at {path}; install tflm from its repository "
            "(pip install -e .) or set TFLM_SAVED_MODELS, or pass --model")
    return path
