"""The pack as the Pulumi CLI runs it: `pulumi preview --policy-pack policies` (from the project root).

The CLI starts `python -m pulumi.policy <engine> .` in this directory (PulumiPolicy.yaml names the
project's virtualenv), which runs this file; PolicyPack's constructor serves the pack and never returns,
so nothing imports this module: tests and `python -m tools.policy` import `policies.rules`.
"""

from pulumi_policy import EnforcementLevel, PolicyPack
from rules import PACK_DESCRIPTION, PACK_NAME, POLICIES

PolicyPack(
    name=PACK_NAME,
    description=PACK_DESCRIPTION,
    # Each rule states its own level; anything without one would be advisory.
    enforcement_level=EnforcementLevel.ADVISORY,
    policies=POLICIES,
)
