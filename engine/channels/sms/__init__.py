"""The SMS channel over SMPP 3.4: encoding, the smpplib bridge, the provider, keywords."""

from engine.channels.sms.bridge import BindError, SmppBridge, SmppStatusError
from engine.channels.sms.encoding import EncodedSms, TooLong, encode_sms
from engine.channels.sms.keywords import classify
from engine.channels.sms.provider import SmppProvider, SmsProviderResult
from schemas.sms import InboundSms, Receipt

__all__ = [
    "BindError",
    "EncodedSms",
    "InboundSms",
    "Receipt",
    "SmppBridge",
    "SmppProvider",
    "SmppStatusError",
    "SmsProviderResult",
    "TooLong",
    "classify",
    "encode_sms",
]
