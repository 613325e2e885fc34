"""The SMS channel over SMPP 3.4: encoding, the smpplib bridge, the provider, keywords."""

from engine.channels.sms.bridge import BindError, SmppBridge, SmppStatusError
from engine.channels.sms.encoding import EncodedSms, TooLong, encode_sms
from engine.channels.sms.inbound import InboundSms, Receipt
from engine.channels.sms.keywords import classify
from engine.channels.sms.numbers import normalise_phone
from engine.channels.sms.provider import SmppProvider, SmsProviderResult
from engine.channels.sms.ratelimit import PartRateLimiter, TokenBucket

__all__ = [
    "BindError",
    "EncodedSms",
    "InboundSms",
    "PartRateLimiter",
    "Receipt",
    "SmppBridge",
    "SmppProvider",
    "SmppStatusError",
    "SmsProviderResult",
    "TokenBucket",
    "TooLong",
    "classify",
    "encode_sms",
    "normalise_phone",
]
