"""The backup section of the stack file (`versatilehub:backup.*`): restic repository, schedule and keys."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    model_validator,
)

from components.core.model import Model, real_secret

_S3_REPOSITORY = re.compile(
    r"s3:https://(?P<host>[a-z0-9.-]+\.[a-z]{2,})(:\d{1,5})?/(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(/[A-Za-z0-9._-]+)*/?"
)
_B2_REPOSITORY = re.compile(r"b2:(?P<bucket>[A-Za-z0-9][A-Za-z0-9-]{4,48}[A-Za-z0-9])(:[A-Za-z0-9._/-]*)?")
_LOCAL_REPOSITORY = re.compile(r"/[A-Za-z0-9._/-]+")
_CLOCK = re.compile(r"(?P<hour>[01]\d|2[0-3]):(?P<minute>[0-5]\d)")
_DAY = "(Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_WEEKLY = re.compile(rf"(?P<days>{_DAY}(,{_DAY})*) (?P<clock>\S+)")
# systemd's full form: [weekdays] year-month-day hour:minute[:second] [time zone]
_FIELD = r"[0-9*,./~]+"
_ON_CALENDAR = re.compile(
    rf"({_DAY}([,.]+{_DAY})* )?{_FIELD}-{_FIELD}-{_FIELD} [0-9*,./]+:[0-9*,./:]+( [A-Za-z_/+-]+)?"
)
_CHECK_SUBSET = re.compile(r"1/([1-9]|[1-9][0-9])|([1-9][0-9]?|100)(\.[0-9]+)?%|[1-9][0-9]*[KMGT]")


def _repository(value: str) -> str:
    value = value.rstrip("/") if value.startswith("s3:") else value
    if _S3_REPOSITORY.fullmatch(value) or _B2_REPOSITORY.fullmatch(value):
        return value
    if _LOCAL_REPOSITORY.fullmatch(value) and ".." not in value.split("/") and value != "/":
        return value
    raise ValueError(
        "is not s3:https://s3.<region>.backblazeb2.com/<bucket>/<path> (Backblaze B2's S3 endpoint, "
        "recommended), b2:<bucket>:<path>, or an absolute local path (labs only)"
    )


def _calendar(value: str) -> str:
    if _CLOCK.fullmatch(value) or (_WEEKLY.fullmatch(value) and _CLOCK.fullmatch(value.split()[-1])):
        return value
    if _ON_CALENDAR.fullmatch(value):
        return value  # a full systemd OnCalendar= expression; the host checks it before installing
    raise ValueError("is not HH:MM, 'Sun 04:30' or a systemd OnCalendar expression such as '*-*-* 03:00:00'")


def _check_subset(value: str) -> str:
    if not _CHECK_SUBSET.fullmatch(value):
        raise ValueError("is not 1/N (a different N-th each week), a percentage (5%) or a size (2G)")
    return value


def _key_shape(value: SecretStr) -> SecretStr:
    # Written to the host's restic.env as KEY=VALUE lines: printable, no spaces, no line breaks.
    if not re.fullmatch(r"[!-~]{8,}", value.get_secret_value()):
        raise ValueError("is not a key (8 or more printable characters, no spaces)")
    return value


BackupKey = Annotated[SecretStr, AfterValidator(real_secret), AfterValidator(_key_shape)]


class BackupConfig(Model):
    """restic backups (issue: Backups): on for every stack, one encrypted repository per client.

    The repository password is generated (pulumi-random) unless `password` adopts an existing repository;
    it is the one key to keep outside the server. restic encrypts everything with it (AES-256).
    """

    enabled: bool = Field(True, json_schema_extra={"example": "false"})
    repository: Annotated[str, AfterValidator(_repository)] | None = Field(
        None,
        json_schema_extra={"example": "s3:https://s3.eu-central-003.backblazeb2.com/acme-backups/clientea"},
    )
    # Backblaze application key (applicationKeyId + applicationKey), restricted to the repository's bucket.
    key_id: BackupKey | None = Field(
        None, json_schema_extra={"example": "--secret --path 'KEY' 003a1b2c3d4e5f60000000001"}
    )
    application_key: BackupKey | None = Field(
        None, json_schema_extra={"example": "--secret --path 'KEY' K003abcdefghijklmnopqrstuvwxyz12"}
    )
    # Only to reuse an existing repository in a new stack (its old state lost); otherwise generated.
    password: BackupKey | None = Field(
        None, json_schema_extra={"example": "--secret --path 'KEY' <the repository password kept offline>"}
    )
    # Daily, in the stack's time zone (HH:MM), or any systemd OnCalendar expression.
    schedule: Annotated[str, AfterValidator(_calendar)] = Field(
        "03:00", json_schema_extra={"example": "01:30"}
    )
    check_schedule: Annotated[str, AfterValidator(_calendar)] = Field(
        "Sun 04:30", json_schema_extra={"example": "'Sat 05:00'"}
    )
    # The seed's 7 days / 30 days / 12 months: 7 dailies, 5 weeklies (about a month), 12 monthlies.
    keep_daily: int = Field(7, ge=1, le=3660, json_schema_extra={"example": "7"})
    keep_weekly: int = Field(5, ge=0, le=520, json_schema_extra={"example": "5"})
    keep_monthly: int = Field(12, ge=0, le=1200, json_schema_extra={"example": "12"})
    # `1/N`: a different N-th of the data each week (all of it every N weeks); or `X%`, or a size (`2G`).
    check_subset: Annotated[str, AfterValidator(_check_subset)] = Field(
        "1/8", json_schema_extra={"example": "1/4"}
    )
    # The newest complete snapshot older than this is an alarm (a day plus a slow run's margin).
    max_age_hours: int = Field(26, ge=1, le=24 * 31, json_schema_extra={"example": "26"})

    @model_validator(mode="after")
    def _repository_and_keys(self) -> BackupConfig:
        if not self.enabled:
            return self
        problems = []
        if self.repository is None:
            problems.append(
                "repository: backups are on for every stack and need a repository; fix: pulumi config set "
                "--path 'versatilehub:backup.repository' "
                "s3:https://s3.<region>.backblazeb2.com/<bucket>/<client> "
                "(or, for a lab only: pulumi config set --path 'versatilehub:backup.enabled' false)"
            )
        elif self.repository_kind == "local":
            for field, name in (("key_id", "keyId"), ("application_key", "applicationKey")):
                if getattr(self, field) is not None:
                    problems.append(f"{name}: a local repository takes no key; remove it")
        else:
            kind = self.repository_kind
            needs = f"{kind}: repositories need a Backblaze application key limited to the bucket"
            if self.key_id is None:
                problems.append(f"keyId: {needs} (its keyID)")
            if self.application_key is None:
                problems.append(f"applicationKey: {needs} (the applicationKey)")
        if problems:
            raise ValueError(" | ".join(problems))
        return self

    @property
    def repository_kind(self) -> Literal["s3", "b2", "local"]:
        repository = self.repository or ""
        return "s3" if repository.startswith("s3:") else "b2" if repository.startswith("b2:") else "local"

    def key_env(self) -> tuple[str, str] | None:
        """restic's variables for the key id and the key of this kind of repository."""
        return {
            "s3": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
            "b2": ("B2_ACCOUNT_ID", "B2_ACCOUNT_KEY"),
        }.get(self.repository_kind)

    def forget_args(self) -> list[str]:
        keep = {"daily": self.keep_daily, "weekly": self.keep_weekly, "monthly": self.keep_monthly}
        return [f"--keep-{period}={count}" for period, count in keep.items() if count]

    @staticmethod
    def on_calendar(value: str, timezone: str) -> str:
        """A systemd OnCalendar= expression; the short forms run in the stack's time zone."""
        if _CLOCK.fullmatch(value):
            return f"*-*-* {value}:00 {timezone}"
        weekly = _WEEKLY.fullmatch(value)
        if weekly and _CLOCK.fullmatch(weekly["clock"]):
            return f"{weekly['days']} *-*-* {weekly['clock']}:00 {timezone}"
        return value
