"""Reward terms (accuracy, format, overlong, code_exec, countdown, group rewards) and the weighted RewardSet
(base.py: the Reward contract), registered in REWARDS.

Components' floor: may import other components and the ground floor, never the RL step or above.
"""
