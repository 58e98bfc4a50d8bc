"""Drive logs from public dataset layouts (``unmask driving import --format FORMAT``)."""
