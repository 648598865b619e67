"""tuneyard: a self-hostable fine-tuning job service for language models."""

from __future__ import annotations

__version__ = "0.1.0"
