#!/usr/bin/env python3
"""Run the ``ignite-mbo`` command line from a lone script, for ``ray submit``.

``ray submit cluster.yaml scripts/ignite_mbo_entry.py -- sweep SPACE.yaml --address auto ...`` copies
this file alone to the head and runs it with the head's Python, where ignite-mbo is installed.
(Running ``python ignite_mbo/cli.py`` instead breaks: the script's folder goes first on ``sys.path``,
and ``ignite_mbo/platform/`` then hides the standard library's ``platform`` module.)
"""

from ignite_mbo.cli import entry

if __name__ == "__main__":
    entry()
