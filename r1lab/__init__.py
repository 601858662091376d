"""r1lab: an experiment platform for DeepSeek-R1 / R1-Zero style RL with verifiable rewards."""

__version__ = "0.1.0"
