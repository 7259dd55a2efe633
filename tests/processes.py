"""The environment of the processes the tests start."""

import os


def host_devices(count: int) -> dict[str, str]:
    """The environment of a CPU-only subprocess with ``count`` forced host devices (and the
    rest of this one's, ``JAX_DISABLE_MOST_OPTIMIZATIONS`` included)."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}"
    return {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
