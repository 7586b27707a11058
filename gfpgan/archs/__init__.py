"""archs package."""
