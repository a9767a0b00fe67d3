"""The one list of sentence-feature names, and the spellings accepted for them.

Canonical names (what `FeatureExtractor`, the feature files, the probe table
and `Task.probe_solver` use): ``f``, ``phi_p`` (Phi p_f), ``p`` (p_f),
``subset`` / ``class`` / ``posneg`` (word scores), ``proj`` (A p_f, the
random projection). Accepted aliases include the reference code's names
("Phi p_f", "subset p_f", ...) and ``random_projection``.
"""

FEATURES = ("f", "phi_p", "p", "subset", "class", "posneg", "proj")
WORD_FEATURES = ("subset", "class", "posneg")
_ALIASES = {
    "phi_p_f": "phi_p", "phip": "phi_p", "phi_pf": "phi_p", "mean": "phi_p",
    "p_f": "p", "pf": "p",
    "subset_p_f": "subset", "class_p_f": "class", "posneg_p_f": "posneg",
    "random_projection": "proj", "a_p_f": "proj", "ap": "proj", "a_p": "proj",
}


def canonical_feature_name(name):
    """'Phi p_f' -> 'phi_p', 'random_projection' -> 'proj', ... (ValueError if unknown)."""
    key = str(name).strip().lower().replace(" ", "_").replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in FEATURES:
        raise ValueError(
            f"unknown feature name {name!r}; expected one of {list(FEATURES)} "
            f"(or the reference names 'Phi p_f', 'subset p_f', 'class p_f', 'posneg p_f', 'p_f')"
        )
    return key


def check_feature_names(names):
    """The canonical names of `names` (a list), ValueError naming any unknown one."""
    return [canonical_feature_name(n) for n in names]
