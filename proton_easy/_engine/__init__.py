"""The engine: the only place that touches proton's private API (``cproton``, ``proton._*``,
underscore attributes). Loop thread, connection handling, raw delivery access and codec."""
