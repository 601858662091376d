"""The language-consistency reward (DeepSeek-R1, stage 2) as an r1lab plugin."""

from r1lab.plugins import Plugin

plugin = Plugin(name="language_consistency", conf="pkg://r1lab_language_consistency.conf",
                modules=("r1lab_language_consistency.reward",))
