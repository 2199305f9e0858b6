"""Helpers of the test suite, not tests: the pcscd/vpcd environment (``pcsc_env``), the fixtures
that insert simulated cards into vpcd (``fixtures``, imported by ``tests/conftest.py``) and the
plugin that records every ``pcscd`` test's outcome for CI (``ci_guard``, ``-p support.ci_guard``)."""
