"""Shared pytest configuration. Fixture modules live in tests/fixtures/ and are registered here."""

pytest_plugins = [
    "tests.fixtures.common",
    "tests.fixtures.s3",
    "tests.fixtures.ceremony",
    "tests.fixtures.kube",
    "tests.fixtures.faultproxy",
    "tests.fixtures.cometbft",
    "tests.fixtures.ec2",
    "tests.fixtures.dns",
    "tests.fixtures.chain",
]
