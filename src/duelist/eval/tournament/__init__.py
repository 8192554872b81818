"""``duelist tournament``: every policy against every other under a judge, on held-out prompts.

* ``config``: the ``tournament:`` section of a YAML file (``TournamentConfig``) and policy resolution;
* ``matrix``: the head-to-head win-rate matrix with 95% intervals, worst case, ranking (pure: samples in);
* ``run``: ``run_tournament(policies, tcfg)`` samples each policy once, judges, writes JSON and a heat map;
* ``plot``: the heat map; ``cli``: the command.

Kept apart from anything that produces the entrants, so a bundled config can train them first and then
call ``run_tournament`` on the trained folders.
"""
