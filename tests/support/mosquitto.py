"""The tests' broker is the product's local mosquitto launcher, on a free port."""

from drivers.mqtt.local_broker import Mosquitto, mosquitto_binary

__all__ = ["Mosquitto", "mosquitto_binary"]
