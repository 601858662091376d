"""Process reward models (PRMs) as an r1lab plugin: step splitting, PRM scoring, a toy PRM and its trainer."""

from r1lab.plugins import Plugin

plugin = Plugin(name="prm", conf="pkg://r1lab_prm.conf", modules=("r1lab_prm.reward",))
