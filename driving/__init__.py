"""unmask driving vertical."""
