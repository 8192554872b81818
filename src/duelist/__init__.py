"""duelist: align language models with preference data.

Data flows one way through the subpackages:
records (``data``) → token batches (``data``) → log-probs (``models``) → loss (``losses``) → update (``train``),
with ``judges``, ``sample`` and ``eval`` measuring the result and ``games`` as the exact tabular twin.
"""

__version__ = "0.1.0"
