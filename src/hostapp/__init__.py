"""hostapp: a plugin host for Python applications built on pluggy."""
from hostapp._version import __version__
