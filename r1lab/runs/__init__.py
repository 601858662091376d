"""A run's files and words: its directory and lock (run_dir), checkpoints and the resume path
(checkpointing), where data sets are found (paths), JSON Lines data files (jsonl), its TensorBoard scalars
(scalars), bad input answered in one paragraph (errors), and what it tells people: the header (header) and
the story in r1lab.log (run_log).

Ground floor: imports only the standard library, third-party packages and other ground-floor packages.
"""
