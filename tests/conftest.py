"""The suite sees only the plugins it installs itself: the hostapp plugins of other
distributions installed in the environment are left out (by location), here and in every
``hostapp`` subprocess a test starts (the helpers keep this one ``HOSTAPP_*`` variable)."""

from __future__ import annotations

import glob
import os

from hostapp.testing import environment_plugin_locations

ISOLATION = "HOSTAPP_PLUGINS__DISABLE_LOCATIONS"


def pytest_configure(config: object) -> None:
    others = environment_plugin_locations()
    if others:
        os.environ[ISOLATION] = ",".join(glob.escape(path) for path in others)
    else:
        os.environ.pop(ISOLATION, None)
