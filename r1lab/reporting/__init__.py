"""Reading runs back: `python -m r1lab report` for a run (report: aha.png, summary.md) or a multirun folder
(sweep_report: tables, notes, verdicts, plots), and `python -m r1lab list` (listing).

Entry-point floor: may import anything in r1lab; nothing imports it but the command line.
"""
