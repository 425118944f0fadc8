"""VersatileHub's CrossGuard policy pack: the seed's security checklist and the CIS Docker rules as code.

`pulumi preview --policy-pack policies` runs it under the engine (``__main__.py`` serves it); the rules
live in ``policies.rules`` so tests and ``python -m tools.policy`` can use the same policy objects.
"""
