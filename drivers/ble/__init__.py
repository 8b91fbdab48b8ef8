"""Bluetooth LE health devices: pure characteristic decoders (standards.md §3).

Every module here turns the bytes of one GATT characteristic into a typed, frozen value
or raises that characteristic's own :class:`~drivers.ble.errors.BleParseError`; nothing
does I/O. The driver (bleak or Bumble underneath) calls them and maps the results to
event data with :mod:`drivers.ble.events`.

- :mod:`~drivers.ble.ieee11073` SFLOAT/FLOAT with their special values
- :mod:`~drivers.ble.date_time` Date Time 0x2A08, Current Time 0x2A2B
- :mod:`~drivers.ble.blood_pressure` 0x2A35, 0x2A36
- :mod:`~drivers.ble.temperature` 0x2A1C, 0x2A1D
- :mod:`~drivers.ble.weight` 0x2A9D, 0x2A9E
- :mod:`~drivers.ble.glucose` 0x2A18, 0x2A34; :mod:`~drivers.ble.racp` 0x2A52
- :mod:`~drivers.ble.pulse_oximeter` 0x2A5E, 0x2A5F, 0x2A60
- :mod:`~drivers.ble.battery` 0x2A19
- :mod:`~drivers.ble.quality` the quality flags status bits map to
- :mod:`~drivers.ble.decoders` every decoder by characteristic UUID
"""
