"""Judging completions: is an answer right, and what does a completion show?

answers (answer extraction, math-verify equivalence), equations (Countdown's), language (which language the
reasoning is in), selfcheck (self-verification phrases), template (where the R1 template's tags live;
split_completion for rewards), sandbox (untrusted code run locked down, for code answers), diagnostics (the
aha moment's failure detectors). Pure functions of text (the sandbox: of a program), testable on hand-made
strings.

Ground floor: imports only the standard library, third-party packages and other ground-floor packages.
"""
