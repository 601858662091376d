"""Curricula: which prompts each RL step sees (base.py: the contract and build_curriculum; uniform,
difficulty, pass_rate), registered in CURRICULA.

Components' floor: may import other components and the ground floor, never the RL step or above.
"""
