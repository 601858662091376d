import sys
from pathlib import Path

import r1lab

if getattr(r1lab, "__file__", None) is None:
    # Run from the folder that holds a checkout named r1lab/ (beside shared/), with an editable install: Python takes
    # that folder for a namespace package `r1lab` (and its plugins/ for `r1lab.plugins`) before the install's finder
    # is asked. A regular package anywhere on sys.path wins over a namespace one, so put the real one's parent last
    # (the working directory stays first for the user's own modules) and import again.
    sys.path.append(str(Path(__file__).resolve().parents[1]))
    for name in [n for n in sys.modules if n == "r1lab" or (n.startswith("r1lab.") and n != "r1lab.__main__")]:
        del sys.modules[name]

from r1lab.cli import main  # noqa: E402

main()
