"""hostapp benchmarks.

Run them with ``python -m benchmarks [--quick] [--only NAME]`` (see ``benchmarks/__main__.py``).
Every suite is a sub-package (``benchmarks/discovery``, ...) registered in
:data:`benchmarks._suites.SUITES`; shared measurement helpers live in
:mod:`benchmarks._common`. Results are written to ``benchmarks/results/<suite>.json``;
generated fixtures (site dirs, caches) live in ``benchmarks/_work/`` (gitignored).

These are measurements, not tests: nothing here asserts on timings.
"""

from __future__ import annotations
