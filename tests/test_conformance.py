"""The conformance suite against every available backend (see conformance/pytest_plugin.py)."""


def test_conformance(conformance_target):
    conformance_target.check()
