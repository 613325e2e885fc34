"""Bodies of the management API (users, devices, consent)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, model_validator

from schemas.common import Platform


class ProfileIn(BaseModel):
    """`PUT /v1/users/{id}`; omitted fields are left as they are."""

    model_config = ConfigDict(extra="forbid")

    timezone: str | None = None
    locale: str | None = Field(default=None, max_length=35)
    phone: str | None = None
    email: str | None = Field(default=None, max_length=320)
    attributes: dict[str, Any] = Field(default_factory=dict)


class SubscriptionKeys(BaseModel):
    p256dh: str = Field(min_length=16)
    auth: str = Field(min_length=8)


class WebPushSubscription(BaseModel):
    endpoint: AnyHttpUrl
    keys: SubscriptionKeys


class DeviceIn(BaseModel):
    """`POST /v1/users/{id}/devices`: a token for ios/android, a subscription for web."""

    model_config = ConfigDict(extra="forbid")

    platform: Platform
    token: str | None = Field(default=None, min_length=1, max_length=4096)
    subscription: WebPushSubscription | None = None
    app_id: str | None = Field(default=None, max_length=255)
    locale: str | None = Field(default=None, max_length=35)
    timezone: str | None = None

    @model_validator(mode="after")
    def _address(self) -> DeviceIn:
        if self.platform is Platform.WEB:
            if self.subscription is None:
                raise ValueError("web devices need a subscription (endpoint and keys)")
        elif not self.token or not self.token.strip():
            raise ValueError(f"{self.platform.value} devices need a non-empty token")
        return self


class ConsentIn(BaseModel):
    """`PUT /v1/users/{id}/consent/{channel}`."""

    model_config = ConfigDict(extra="forbid")

    topic: str = Field(default="marketing", min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
    state: Literal["subscribed", "unsubscribed", "pending"]
    source: Literal["api", "sms_keyword", "form", "import", "device"] = "api"
    evidence: str | None = Field(default=None, max_length=2000)
    actor: str | None = Field(default=None, max_length=255)
