"""System tests: real systemd as PID 1 in the sandbox (see README.md)."""
