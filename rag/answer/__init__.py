"""Answers a user can trust: extractive, grounded and generated answer modes, abstention and claim-level citations.

See docs/answers.md.
"""
