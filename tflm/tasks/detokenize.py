"""PTB / SST-style detokenization (off by default everywhere in tflm).

SST, TREC, CR and MPQA texts are Penn-Treebank tokenized (``does n't``,
``it 's``, `` `` ``/``''`` quotes, ``-LRB-``). GPT-2 saw ordinary text, so
features of detokenized text can differ; the paper used the text as
distributed, which is why this is opt-in (``load_split(..., detokenize=True)``).
"""

import re

_I = re.IGNORECASE
_RULES = [
    # PTB bracket escapes (also the lower-cased forms of SentEval files).
    (re.compile(r"-LRB-", _I), "("),
    (re.compile(r"-RRB-", _I), ")"),
    (re.compile(r"-LSB-", _I), "["),
    (re.compile(r"-RSB-", _I), "]"),
    (re.compile(r"-LCB-", _I), "{"),
    (re.compile(r"-RCB-", _I), "}"),
    (re.compile(r"\\([/*])"), r"\1"),
    # Double quotes: `` opens (attach to the next word), '' closes.
    (re.compile(r"``\s*"), '"'),
    (re.compile(r"\s*''"), '"'),
    # Negation clitic: does n't -> doesn't, ca n't -> can't, wo n't -> won't.
    (re.compile(r"(\w)\s+(n't)\b", _I), r"\1\2"),
    # Other clitics: it 's, you 're, I 've, I 'm, we 'll, he 'd, don 't (CR).
    (re.compile(r"(\w)\s+('(?:s|re|ve|m|ll|d|t))\b", _I), r"\1\2"),
    # A lone ' after a word closes a quote or marks a plural possessive:
    # "the filmmakers ' puppet" -> "the filmmakers' puppet".
    (re.compile(r"(\w)\s+'(?=\s|$)"), r"\1'"),
    # PTB splits of gonna / wanna / gotta / lemme.
    (re.compile(r"\b(gon|wan)\s+(na)\b", _I), r"\1\2"),
    (re.compile(r"\b(got)\s+(ta)\b", _I), r"\1\2"),
    (re.compile(r"\b(lem)\s+(me)\b", _I), r"\1\2"),
    # Opening single quote `word -> 'word.
    (re.compile(r"`\s*"), "'"),
    # Closing punctuation attaches to the left: " ," " ." " ..." " ;" " )" ...
    (re.compile(r"\s+([,.;:!?%)\]}])"), r"\1"),
    # Opening brackets and currency attach to the right: "( x" -> "(x", "$ 5" -> "$5".
    (re.compile(r"([(\[{])\s+"), r"\1"),
    (re.compile(r"\$\s+(?=\d)"), "$"),
    (re.compile(r"[ ]{2,}"), " "),
]


def ptb_detokenize(text):
    """Undo PTB / SST tokenization.

    >>> ptb_detokenize("it 's a film that does n't work , `` really '' .")
    'it\\'s a film that doesn\\'t work, "really".'
    >>> ptb_detokenize("-LRB- I ca n't -RRB-")
    "(I can't)"
    """
    for pattern, repl in _RULES:
        text = pattern.sub(repl, text)
    return text.strip()
