"""Built-in hostapp plugins, loaded through the same entry points as anyone's.

PYTEST_DONT_REWRITE (imported before pytest when ``hostapp run -m pytest`` runs it; see
:mod:`hostapp_pytest`).
"""
