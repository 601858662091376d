"""The RL step: the Lightning module (module.py), rollout collection and dynamic sampling (collect), advantages,
losses, log-probs, metrics and settings.

The RL step's floor: may import components and the ground floor, never the trainer, stages or entry points.
"""
