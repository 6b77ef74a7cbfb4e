"""Test-only code: fault injection for the ClientApp and many control-plane clients for load tests.

No production module imports this package (import-linter contract ``testing-only``). The fault
injection reaches a ClientApp through the generic client hook of :mod:`kosmos_fl.fl.client_hooks`:
the test suite sets ``KOSMOS_FL_CLIENT_HOOKS=kosmos_fl.testing.faults`` (tests/conftest.py).
"""
