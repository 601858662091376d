"""The toy world: its corpus, the shipped base and control models, the probe and the cold-start data.

Components' floor: may import other components and the ground floor, never the RL step or above.
"""
