"""Delivery: the gate in the database, then the provider calls, every attempt recorded."""

from engine.delivery.deliverer import Deliverer, DeliveryRetry

__all__ = ["Deliverer", "DeliveryRetry"]
