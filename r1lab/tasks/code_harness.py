"""The program that runs inside the code sandbox (standard library only: it is copied there and run with
`python -I -S`), and the value codec the parent shares with it.

Two modes, both reading a JSON spec:
- `probe`: load the candidate's code (`solution.py`), run the test setup when the calls need it, then evaluate
  each call of the entry point the tests make (their inputs only, never the expected values) and report each
  result as plain data on the report channel. The candidate shares this process and may rewrite or forge
  anything here: the parent decides from plain values and expected values that never entered the sandbox.
- `judge`: no candidate code at all; bind the reported values (decoded) and evaluate the test expressions that
  need more than comparing plain values (e.g. `abs(candidate(x) - y) < 1e-6`, a helper of the test setup).
"""

import json
import os
import sys

MAX_DEPTH = 32


class Unsupported(TypeError):
    """A value that is not plain data (None, bool, int, float, complex, str, bytes and their containers)."""


def encode(value, depth=0):
    """JSON-able form of a plain value, types kept exactly; subclasses (an int whose __eq__ lies) are refused."""
    if depth > MAX_DEPTH:
        raise Unsupported("nested too deep")
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        return {"int": str(value)}  # JSON numbers would make 1 and 1.0 alike
    if kind is float:
        return {"float": repr(value)}  # keeps nan and inf
    if kind is complex:
        return {"complex": [repr(value.real), repr(value.imag)]}
    if kind is bytes:
        return {"bytes": value.hex()}
    if kind in (list, tuple, set, frozenset):
        items = sorted(value, key=repr) if kind in (set, frozenset) else value
        return {kind.__name__: [encode(item, depth + 1) for item in items]}
    if kind is dict:
        return {"dict": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    raise Unsupported(f"a {kind.__name__} is not plain data")


def decode(form, depth=0):
    """The plain value `encode` wrote; anything else raises Unsupported (the parent reads what a candidate may
    have forged: only these plain types ever come out)."""
    if depth > MAX_DEPTH:
        raise Unsupported("nested too deep")
    if form is None or type(form) is bool or type(form) is str:
        return form
    if type(form) is not dict or len(form) != 1:
        raise Unsupported(f"not an encoded value: {form!r:.80}")
    (tag, body), = form.items()
    if tag == "int" and type(body) is str:
        return int(body)
    if tag == "float" and type(body) is str:
        return float(body)
    if tag == "complex" and type(body) is list and len(body) == 2 and all(type(p) is str for p in body):
        return complex(float(body[0]), float(body[1]))
    if tag == "bytes" and type(body) is str:
        return bytes.fromhex(body)
    if tag in ("list", "tuple", "set", "frozenset") and type(body) is list:
        items = [decode(item, depth + 1) for item in body]
        return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)
    if tag == "dict" and type(body) is list and all(type(p) is list and len(p) == 2 for p in body):
        return {decode(k, depth + 1): decode(v, depth + 1) for k, v in body}
    raise Unsupported(f"not an encoded value: {form!r:.80}")


def probe(spec, report):
    namespace = {"__name__": "__main__"}
    try:
        with open(spec["solution"], encoding="utf-8") as handle:
            exec(compile(handle.read(), "solution.py", "exec"), namespace)
        if spec["setup"]:
            exec(compile(spec["setup"], "tests.py", "exec"), namespace)
    except BaseException as exc:  # SystemExit too: code that exits while loading has loaded nothing
        report({"loaded": False, "error": type(exc).__name__})
        return
    report({"loaded": True})
    for index, call in enumerate(spec["calls"]):
        try:
            report({"call": index, "value": encode(eval(compile(call, f"call {index}", "eval"), namespace))})
        except BaseException as exc:
            report({"call": index, "error": type(exc).__name__})


def judge(spec, report):
    namespace = {"__name__": "__main__"}
    exec(compile(spec["setup"], "tests.py", "exec"), namespace)
    for name, form in spec["values"].items():
        namespace[name] = decode(form)
    for index, check in enumerate(spec["checks"]):
        try:
            report({"check": index, "passed": bool(eval(compile(check, f"check {index}", "eval"), namespace))})
        except Exception as exc:
            report({"check": index, "passed": False, "error": type(exc).__name__})


def main():
    """`main.py <report fd>`, with spec.json (and solution.py) beside it."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "spec.json"), encoding="utf-8") as handle:
        spec = json.load(handle)
    spec["solution"] = os.path.join(here, "solution.py")
    channel = open(int(sys.argv[1]), "w", encoding="utf-8", closefd=False)

    def report(record):
        channel.write(json.dumps(record) + "\n")
        channel.flush()

    {"probe": probe, "judge": judge}[spec["mode"]](spec, report)


if __name__ == "__main__":
    main()
