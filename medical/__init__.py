"""unmask medical vertical."""
