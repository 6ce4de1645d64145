#!/usr/bin/env python3
"""Prompts for synthetic extra training speech: each digit word, as a Kaldi text file."""
WORDS = "zero one two three four five six seven eight nine".split()
for i, word in enumerate(WORDS):
    print(f"digit{i} {word}")
