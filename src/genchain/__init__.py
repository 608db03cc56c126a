"""genchain: the AI-generated-content value chain on your own data and machines."""

__version__ = "0.1.0"
