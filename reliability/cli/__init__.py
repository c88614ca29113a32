"""The command line: `python -m reliability` (main), its training commands, and what both share."""
