"""The tokenizer both models share: code-aware byte-level BPE, special tokens, chat template.

`io.py` loads/saves (the `hillclimb.load_tokenizer` contract), `specials.py` fixes the special
tokens and the chat template, `bytelevel.py` makes the byte-level fallback that `hillclimb init`
uses when no trained tokenizer is given.
"""
