"""The SQLite lab notebook: items, runs, answers and human labels.

reliability/ builds on this package, so from reliability/ it imports only the leaf vocabulary
modules reliability.types and reliability.errors (tests/test_architecture.py holds it to that).
"""
