"""The Agent's section of the stack file (`versatilehub:agent.*`): OpenClaw's model, keys and channels."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
)

from components.core.model import NAMESPACE, Model, real_secret

_EXAMPLE_KEY = re.compile(r"^(sk-(ant-|or-|proj-)?|AIza)?[xX.*<>…]+$")


def _api_key_shape(value: SecretStr) -> SecretStr:
    plain = value.get_secret_value().strip()
    if _EXAMPLE_KEY.match(plain):
        raise ValueError("is an example value, not a real key")
    if len(plain) < 20 or any(ch.isspace() for ch in plain):
        raise ValueError("is not an API key or bot token (too short, or contains spaces)")
    return value


# A provider API key or a channel token: a real credential, never an example pasted from documentation.
ApiKey = Annotated[SecretStr, AfterValidator(real_secret), AfterValidator(_api_key_shape)]

# Model references (`provider/model`) of the providers AgentProviderKeys holds keys for -> that key.
AGENT_MODEL_PROVIDERS = {
    "anthropic": "anthropic",
    "openai": "openai",
    "openrouter": "openrouter",
    "google": "gemini",
}


def _model_ref(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*/[A-Za-z0-9][A-Za-z0-9._:/@+-]*", value):
        raise ValueError("is not a provider/model reference such as anthropic/claude-sonnet-4-5")
    return value


class _AgentCredentials(Model):
    def configured(self) -> list[str]:
        """The names of the credentials that are set."""
        return [name for name in type(self).model_fields if getattr(self, name) is not None]


class AgentProviderKeys(_AgentCredentials):
    """LLM provider API keys, stored with --secret; OpenClaw reads each from its usual variable."""

    anthropic: ApiKey | None = Field(
        None, json_schema_extra={"example": "--secret --path 'KEY' sk-ant-api03-..."}
    )
    openai: ApiKey | None = Field(None, json_schema_extra={"example": "--secret --path 'KEY' sk-proj-..."})
    openrouter: ApiKey | None = Field(
        None, json_schema_extra={"example": "--secret --path 'KEY' sk-or-v1-..."}
    )
    gemini: ApiKey | None = Field(None, json_schema_extra={"example": "--secret --path 'KEY' AIzaSy..."})


class AgentChannels(_AgentCredentials):
    """Chat channels' bot tokens, stored with --secret; unknown senders get a pairing code, not a reply."""

    telegram: ApiKey | None = Field(
        None, json_schema_extra={"example": "--secret --path 'KEY' 123456789:AAE..."}
    )


class AgentConfig(Model):
    """OpenClaw (issue: Agent): its default model, the provider keys it may use and its chat channels."""

    # Set explicitly: OpenClaw's built-in default may belong to a provider this client has no key for.
    model: Annotated[str, AfterValidator(_model_ref)] | None = Field(
        None, json_schema_extra={"example": "anthropic/claude-sonnet-4-5"}
    )
    provider_keys: AgentProviderKeys = Field(
        default_factory=AgentProviderKeys,  # type: ignore[arg-type]
        json_schema_extra={"example": "--secret --path 'KEY.anthropic' sk-ant-api03-..."},
    )
    channels: AgentChannels = Field(default_factory=AgentChannels)  # type: ignore[arg-type]

    def problems_when_enabled(self) -> list[str]:
        keys = self.provider_keys.configured()
        problems = []
        if not keys:
            problems.append(
                "providerKeys: the agent needs at least one model provider key "
                f"({', '.join(AgentProviderKeys.model_fields)})"
            )
        if self.model is None:
            problems.append("model: the agent needs its default model, written provider/model")
        else:
            provider = self.model.split("/", 1)[0]
            needed = AGENT_MODEL_PROVIDERS.get(provider)
            if keys and needed is not None and needed not in keys:
                key = f"{NAMESPACE}:agent.providerKeys.{needed}"
                usable = [p for p, k in AGENT_MODEL_PROVIDERS.items() if k in keys]
                problems.append(
                    f"model: {self.model} runs on {provider}, which has no key; fix: pulumi config set "
                    f"--secret --path '{key}' <key>, or pick a model of {' or '.join(usable)}: "
                    f"pulumi config set --path '{NAMESPACE}:agent.model' {usable[0]}/<model>"
                )
        return problems
