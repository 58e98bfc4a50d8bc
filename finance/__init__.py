"""unmask finance vertical."""
