"""Split a chain of thought into steps, the units a process reward model scores.

`lines`: one step per line, as in PRM800K: display math (`\\[ … \\]`, `\\begin{…} … \\end{…}`, `$$`) stays
with the line that introduces it, `# Answer` keeps its answer, "Step k:" markers start steps too.
`toy`: the toy world's trace: the first guess, each column of the check, the conclusion
("89312 Wait, let me verify: 4+8+0=12,3+8+1=12 so 89222" → ["89312", "4+8+0=12", "3+8+1=12", "89222"]).
"""

from __future__ import annotations

import re

from r1lab.judging.template import split_completion
from r1lab.toy.corpus import SELF_CHECK

STEP_MARKER = re.compile(r"(?=\bStep \d+\s*:)")
MATH_START = re.compile(r"^\s*(\\\[|\\begin\{|\$\$|\\end\{|&|\\\\)")
TOY_SPLIT = re.compile(r",|\s+so\s+|" + re.escape(SELF_CHECK))
STYLES = ("lines", "toy")


def split_lines(text: str) -> list[str]:
    steps: list[str] = []
    open_math = 0  # display-math blocks still open: their lines belong to the current step
    answer_pending = False
    blank_lines = 0
    for raw in text.split("\n"):
        line = raw.rstrip()
        if not line.strip():
            blank_lines += 1
            continue
        for piece in [p for p in STEP_MARKER.split(line) if p.strip()]:
            continues = steps and (open_math > 0 or answer_pending or MATH_START.match(piece))
            if continues:
                steps[-1] += "\n" * (1 + blank_lines) + piece
            else:
                steps.append(piece)
            blank_lines = 0
            answer_pending = piece.strip() == "# Answer"
            open_math += len(re.findall(r"\\begin\{|\\\[", piece)) - len(re.findall(r"\\end\{|\\\]", piece))
            open_math += piece.count("$$") % 2 * (1 if open_math == 0 else -1)
            open_math = max(open_math, 0)
    return steps


def split_toy(text: str) -> list[str]:
    return [piece.strip() for piece in TOY_SPLIT.split(text) if piece.strip()]


def split_steps(completion: str, style: str = "lines") -> list[str]:
    if style not in STYLES:
        raise ValueError(f"unknown step style {style!r}; choose one of {', '.join(STYLES)}")
    text = split_completion(completion).thinking
    return split_lines(text) if style == "lines" else split_toy(text)
