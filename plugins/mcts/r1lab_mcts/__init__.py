"""Step-level Monte Carlo tree search as an r1lab sampler plugin (the paper's costly negative result)."""

from r1lab.plugins import Plugin

plugin = Plugin(name="mcts", conf="pkg://r1lab_mcts.conf", modules=("r1lab_mcts.sampler",))
