"""Checks of the command line before Hydra starts a job (and writes `.hydra/` and the log into the run
directory): keys that do not exist (with a did-you-mean), values of the wrong type or not finite, and a run
directory that already holds a run. Each problem is one message; the CLI prints them and exits with 2."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, Override
from hydra.errors import HydraException
from omegaconf import DictConfig, ListConfig, OmegaConf

from r1lab.runs.errors import RunError
from r1lab.runs.run_dir import ensure_writable, in_use_by, in_use_message

# What a run that started leaves in its directory; any of them means the directory holds a run (a start that
# stopped on bad input leaves only .hydra/ and its log, which a fixed command may replace).
RUN_MARKS = ("checkpoints", "policy", "tb", "samples.jsonl", "eval_samples.jsonl", "dataset.jsonl", "summary.json",
             "pipeline.json", "multirun.yaml")


def _parse(argv: Sequence[str]) -> list[Override] | None:
    try:
        return OverridesParser.create().parse_overrides([a for a in argv if not a.startswith("-")])
    except HydraException:
        return None  # malformed: Hydra's own parser error is the clearer message


def _values(override: Override) -> list[Any]:
    if not override.is_sweep_override():
        return [override.value()]
    sweep = override.value()
    return list(sweep.list) if isinstance(sweep, ChoiceSweep) else []  # ranges and intervals: Hydra checks


def _keys(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, dict):
        for key, child in node.items():
            yield f"{prefix}{key}"
            yield from _keys(child, f"{prefix}{key}.")


def _kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return None


def value_errors(key: str, default: Any, values: list[Any]) -> list[str]:
    """`key=value` against the default it replaces: a number stays a finite number, a flag true or false
    (null stays allowed: many knobs take it, and their own checks say more)."""
    errors = []
    wanted = _kind(default)
    for value in values:
        if value is None or (isinstance(value, str) and "${" in value):
            continue  # an interpolation: resolved later
        if isinstance(value, float) and not math.isfinite(value):
            errors.append(f"{key}={value}: numbers must be finite (nan and inf are not allowed); the default is "
                          f"{default!r}")
        elif wanted == "bool" and not isinstance(value, bool):
            errors.append(f"{key}={value!r}: expected true or false (the default is {str(default).lower()})")
        elif wanted in ("int", "float") and _kind(value) not in ("int", "float"):
            kind = "an integer" if wanted == "int" else "a number"
            errors.append(f"{key}={value!r}: expected {kind} (the default is {default})")
    return errors


def config_errors(argv: Sequence[str]) -> list[str]:
    """Keys that do not exist and values that do not fit, checked against the config the command line's
    config-group choices compose."""
    parsed = _parse(argv)
    if parsed is None or any(o.key_or_group == "hydra.searchpath" for o in parsed):
        return []  # the user's own config folders: Hydra, which reads them, checks
    with initialize_config_module(config_module="r1lab.conf", version_base="1.3"):
        groups = set(GlobalHydra.instance().config_loader().list_groups(""))
        choices = [o.input_line for o in parsed if o.key_or_group in groups and not o.is_sweep_override()]
        try:
            base = compose(config_name="config", overrides=choices)
        except HydraException:
            return []  # an unknown option: choices.py has said so
    known = sorted(set(_keys(OmegaConf.to_container(base, resolve=False))))
    known_set = set(known)
    errors = []
    for override in parsed:
        key = override.key_or_group
        if (key in groups or "/" in key or key.split(".")[0] == "hydra" or override.is_delete()
                or override.is_add() or override.is_force_add()):
            continue  # a config group (hydra/launcher=...), Hydra's own settings, or `+key=...`: Hydra checks
        if key not in known_set and not _under_open_dict(base, key):
            parent, _, leaf = key.rpartition(".")
            siblings = [k.rpartition(".")[2] for k in known if k.rpartition(".")[0] == parent]
            # A misspelt last part first (min_char → min_chars, not weight), else a misspelt path; never _target_.
            close = [f"{parent}.{name}" if parent else name for name in difflib.get_close_matches(
                leaf, [n for n in siblings if not n.startswith("_")], n=2, cutoff=0.6)]
            close = close or difflib.get_close_matches(key, [k for k in known if "._" not in f".{k}"], n=2, cutoff=0.75)
            hint = f" Did you mean {' or '.join(close)}?" if close else ""
            listed = f" Keys under {parent or 'the root'}: {', '.join(siblings[:40])}." if siblings else ""
            errors.append(f"there is no key {key!r} in the config.{hint}{listed} (`+{key}=...` adds a new one)")
            continue
        default = OmegaConf.select(base, key, default=None, throw_on_missing=False, throw_on_resolution_failure=False)
        if isinstance(default, (DictConfig, ListConfig)):
            continue
        errors += value_errors(key, default, _values(override))
    return errors


def _under_open_dict(cfg: DictConfig, key: str) -> bool:
    """A key under a node that accepts new keys (not in struct mode): Hydra takes it, so may we."""
    parent = key.rpartition(".")[0]
    node = OmegaConf.select(cfg, parent, default=None, throw_on_missing=False,
                            throw_on_resolution_failure=False) if parent else cfg
    return isinstance(node, DictConfig) and OmegaConf.is_struct(node) is False


def holds_a_run(path: Path) -> bool:
    return path.is_dir() and any((path / mark).exists() for mark in RUN_MARKS)


def run_dir_errors(argv: Sequence[str]) -> list[str]:
    """A run directory given on the command line must be writable and, unless the run resumes, must not hold
    another run (Hydra would rewrite its .hydra/, the run its policy, logs and samples)."""
    parsed = _parse(argv) or []
    given = {o.key_or_group: o.value() for o in parsed if not o.is_sweep_override()}
    resumes = given.get("resume") not in (None, "", "null")
    errors = []
    for key in ("hydra.run.dir", "hydra.sweep.dir"):
        value = given.get(key)
        if not isinstance(value, str) or not value or "${" in value:
            continue
        multirun = key == "hydra.sweep.dir"
        if multirun != any(a in ("-m", "--multirun") for a in argv):
            continue  # the other kind of run: Hydra does not use this directory
        path = Path(value).expanduser()
        holder = in_use_by(path)
        if holder:
            errors.append(in_use_message(path, holder))
            continue
        if not resumes and holds_a_run(path):
            marks = ", ".join(m for m in RUN_MARKS if (path / m).exists())
            errors.append(f"the run directory {path} already holds a run ({marks}); "
                          f"continue it with resume=auto, or choose a fresh directory with {key}=... "
                          "(or remove this one: r1lab never overwrites a run)")
            continue
        try:
            ensure_writable(path)
        except RunError as exc:
            errors.append(str(exc))
    return errors


def resume_errors(argv: Sequence[str]) -> list[str]:
    """A resume into another model than the checkpoint's is refused here, before Hydra rewrites the run
    directory's .hydra/ (which says what the checkpoint was trained with)."""
    parsed = _parse(argv) or []
    given = {o.key_or_group: o.value() for o in parsed if not o.is_sweep_override()}
    run_dir, resume = given.get("hydra.run.dir"), given.get("resume")
    if any(a in ("-m", "--multirun") for a in argv) or resume in (None, "", "null") or not isinstance(run_dir, str) \
            or "${" in run_dir or any(o.key_or_group == "hydra.searchpath" for o in parsed):
        return []
    from r1lab.runs.checkpointing import CheckpointError, auto_resume, read_checkpoint, resolve_resume, \
        resume_differences, run_identity

    try:
        path = Path(run_dir).expanduser()
        checkpoint = auto_resume(path, rename=False)[0] if resume == "auto" else resolve_resume(str(resume), path)
        if checkpoint is None:
            return []
        saved = read_checkpoint(checkpoint)[1]
        with initialize_config_module(config_module="r1lab.conf", version_base="1.3"):
            cfg = compose(config_name="config", overrides=[o.input_line for o in parsed
                                                           if not o.key_or_group.startswith("hydra")])
        resume_differences(saved, run_identity(cfg), checkpoint)
    except (CheckpointError, FileNotFoundError) as exc:
        return [str(exc)]
    except HydraException:
        return []  # Hydra's own message follows
    return []
