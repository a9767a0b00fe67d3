"""Which probe fits which feature: the registry `tflm probe` looks up.

Each entry names the estimator class (a scikit-learn estimator: ``fit``,
``predict``, ``score``, ``summary``, ``clone``-able) and the input it takes:

- "derived": the feature itself, derived from f (``SentenceFeatures.derive``);
- "f": the sentence representation f (the softmax probe derives p in-graph);
- "zeroshot": the scores of the task's zero-shot words (the zero-shot rule).

Probes take solver settings as constructor arguments; the caller maps a task
to settings (e.g. ``task.probe_solver(feature)``), so nothing here knows tasks.
"""

from dataclasses import dataclass

from tflm.probes.logistic_probe import LogisticProbe
from tflm.probes.softmax_probe import SoftmaxProbe
from tflm.probes.zero_shot_estimator import ZeroShotProbe

INPUTS = ("derived", "f", "zeroshot")


@dataclass(frozen=True)
class ProbeSpec:
    name: str
    estimator: type
    input: str
    trains: bool = True  # False: fit learns nothing (score every row as a test row)

    def make(self, **settings):
        """An unfitted estimator with these settings."""
        return self.estimator(**settings)


PROBES = {}


def register_probe(feature, name, estimator, input="derived", trains=True):
    """Register (or replace) the probe used for `feature`."""
    if input not in INPUTS:
        raise ValueError(f"input must be one of {INPUTS}, got {input!r}")
    PROBES[feature] = ProbeSpec(name, estimator, input, trains)
    return PROBES[feature]


def probe_for(feature):
    """The `ProbeSpec` of a feature name."""
    if feature not in PROBES:
        raise ValueError(f"no probe is registered for feature {feature!r}; registered: {sorted(PROBES)}")
    return PROBES[feature]


for _feature in ("f", "phi_p", "proj", "subset", "class", "posneg"):
    register_probe(_feature, "logistic", LogisticProbe)
register_probe("p", "softmax", SoftmaxProbe, input="f")
register_probe("zeroshot", "zeroshot", ZeroShotProbe, input="zeroshot", trains=False)
register_probe("zeroshot_cal", "zeroshot", ZeroShotProbe, input="zeroshot", trains=False)
