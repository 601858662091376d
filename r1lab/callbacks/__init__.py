"""Lightning callbacks around the RL step: the aha moment, diagnostics, samples, the saved policy, the
generation budget, held-out evaluation, progress lines and the end summary, preemption (signals → checkpoint).

The RL step's floor: may import components and the ground floor, never the trainer, stages or entry points.
"""
