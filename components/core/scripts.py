"""Scripts as files: a service's shell, Python and Ruby live in `scripts/` beside its component.

They are read at plan time, exactly as the host step or container receives them, so linters
(ruff, shellcheck, `ruby -c` in .ci/run) and the tests see the same text the program sends.
"""

from __future__ import annotations

from importlib import resources


def script(module: str, name: str) -> str:
    """The text of `scripts/<name>` in the package of `module` (pass the caller's `__name__`)."""
    package = module.rpartition(".")[0]
    return resources.files(package).joinpath("scripts").joinpath(name).read_text(encoding="utf-8")


# A secret-bearing step's output into a private log on the host, one line on failure (scripts/steplog.sh).
STEPLOG = script(__name__, "steplog.sh")
# Secret-free progress lines for long host steps (scripts/progress.sh, with the log helpers it uses),
# prepended to the steps that use them.
PROGRESS = STEPLOG + script(__name__, "progress.sh")
