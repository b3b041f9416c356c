"""Skip collecting (doctesting) an integration whose optional extra is not installed.

The package is doctested with ``--doctest-modules``; importing :mod:`gradinv.integrations.flower`
without ``flwr`` raises the error that names the extra, which would be a collection error rather
than a skip. The tests in ``tests/integrations`` skip with the reason instead.
"""

from __future__ import annotations

import importlib.util

collect_ignore_glob = [] if importlib.util.find_spec("flwr") is not None else ["flower/*"]
