"""pcsystemd: audited YAML job files compiled into systemd units, plus the runtime shim."""

__version__ = "0.1.0"
