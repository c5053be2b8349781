"""Software-defined assets of the lakehouse, one module per layer."""
