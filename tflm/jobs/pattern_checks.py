"""The paper's qualitative pattern, checked on probe rows (`tflm reproduce`, its tables and real-LM rows)."""

from tflm.features.names import FEATURES as LINEAR_PROBES  # every feature a linear probe is trained on
from tflm.report import fmt

# Features built from the task's words (and zero-shot) that phi_p should beat and that should beat chance.
WORD_LIKE = ("subset", "class", "posneg", "zeroshot", "zeroshot_cal")


def pattern_checks(rows):
    """The paper's qualitative pattern, checked plainly on probe rows (list of strings)."""
    acc = {(r["row"], r["feature"]): r.get("test_accuracy") for r in rows if "skipped" not in r}
    notes = []
    for row in dict.fromkeys(r["row"] for r in rows):
        maj = next(r["majority"] for r in rows if r["row"] == row)
        f, phi_p = acc.get((row, "f")), acc.get((row, "phi_p"))
        words = {w: acc[(row, w)] for w in WORD_LIKE if acc.get((row, w)) is not None}
        if f is not None and phi_p is not None:
            notes.append(f"{'holds' if f >= phi_p else 'FAILS'}: {row}: f ({fmt(f)}) >= phi_p ({fmt(phi_p)})")
        if phi_p is not None and words:
            best = max(words, key=words.get)
            notes.append(f"{'holds' if phi_p > words[best] else 'FAILS'}: {row}: phi_p ({fmt(phi_p)}) > "
                         f"best word feature {best} ({fmt(words[best])})")
        for w, a in words.items():
            notes.append(f"{'holds' if a > maj else 'FAILS'}: {row}: {w} ({fmt(a)}) > majority class ({fmt(maj)})")
        ft = acc.get((row, "FT"))
        probes = {k[1]: a for k, a in acc.items() if k[0] == row and k[1] in LINEAR_PROBES and a is not None}
        if ft is not None and probes:
            best = max(probes, key=probes.get)
            notes.append(f"{'holds' if ft >= probes[best] else 'FAILS'}: {row}: FT ({fmt(ft)}) >= every linear probe "
                         f"(best {best} {fmt(probes[best])})")
    for row in dict.fromkeys(r["row"] for r in rows if r["prompt"]):
        base = row[:-1]
        for w in WORD_LIKE:
            a, b = acc.get((base, w)), acc.get((row, w))
            if a is not None and b is not None:
                notes.append(f"{'holds' if b > a else 'FAILS'}: prompt helps {w}: {base} {fmt(a)} -> {row} {fmt(b)}")
    return notes


def pattern_counts(notes):
    """("N checks hold, M fail", the failing notes) of `pattern_checks` notes."""
    fails = [n for n in notes if n.startswith("FAILS")]
    return f"{len(notes) - len(fails)} checks hold, {len(fails)} fail", fails
