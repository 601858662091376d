"""Length rewards as an r1lab plugin: Kimi k1.5's group length penalty and the cosine length reward."""

from r1lab.plugins import Plugin

plugin = Plugin(name="length_penalty", conf="pkg://r1lab_length_penalty.conf",
                modules=("r1lab_length_penalty.rewards",))
