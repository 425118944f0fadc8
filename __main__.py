"""VersatileHub: one client's suite from its stack file (Pulumi.<client>.yaml)."""

import pulumi

from components import config
from components.suite import deploy

suite = deploy(config.load())
for key, value in suite.outputs.items():
    pulumi.export(key, value)
