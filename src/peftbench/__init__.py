"""peftbench: how much do we lose, and what do we save, by training under 1% of a BERT's parameters?"""

__version__ = "0.1.0"
