pytest_plugins = ["reprosparse.conformance.pytest_plugin"]
