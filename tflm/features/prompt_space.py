"""The prompt's trailing space: keep it (the reference) or strip it, chosen per tokenizer.

The reference prompts end with a space (" This movie is "). Byte-level BPE
tokenizers make that space a token of its own, so f is read at the token
" " rather than at the prompt's last word. The reference code was written for
GPT-2 BPE and keeps the space; for other tokenizers the default follows the
measurement in docs/results/prompt_space/: on SmolLM2 (prompted rows, 1,000
seeded training examples) stripping the space raised f by 0.2-1.9 points and
phi_p by 5.0-11.1 points on sst2, cr, sst5 and agnews. On Gemma 3 270M
(SentencePiece BPE, bf16, the same protocol: docs/results/prompt_space_gemma3/)
stripping raised phi_p by 2.7-43.2 points on all four tasks and f on sst2 and
agnews (+1.5, +1.6), while it lowered f on sst5 and cr (-2.6, -1.1): strip
again. Those two are the non-GPT-2 tokenizers measured; "other" covers the
rest until measured.
`strip_prompt_space=True / False` always wins over the default; every result
records the choice used.
"""

# Token ids of the reference prompt " This movie is " under GPT-2 BPE (the trailing space is id 220).
_GPT2_PROBE = (" This movie is ", [770, 3807, 318, 220])
# tokenizer family -> strip the trailing space by default?
DEFAULT_BY_FAMILY = {"gpt2-bpe": False, "other": True}


def tokenizer_family(tokenizer):
    """"gpt2-bpe" when `tokenizer` encodes like GPT-2's BPE (vocabulary and merges), else "other"."""
    text, ids = _GPT2_PROBE
    same = tokenizer.vocabulary_size in (50257, 50258) and list(tokenizer.encode(text)) == ids
    return "gpt2-bpe" if same else "other"


def resolve_strip_prompt_space(tokenizer, strip_prompt_space=None):
    """`strip_prompt_space` itself when given (True / False), else the tokenizer family's default."""
    if strip_prompt_space is not None:
        return bool(strip_prompt_space)
    return DEFAULT_BY_FAMILY[tokenizer_family(tokenizer)]
