"""What the command line does around a run: config-group choices checked before Hydra composes (choices),
keys, values, the run directory and a resume checked before Hydra starts a job (preflight), and a sweep's
failed jobs recorded while the others run (sweep_jobs).

Entry-point floor: may import anything in r1lab; nothing imports it but the command line.
"""
