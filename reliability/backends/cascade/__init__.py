"""The cascade backend and the parts it alone uses: evidence extraction (evidence) and its text model (text_model)."""
from reliability.backends.cascade.backend import ABSTAIN_MARGIN, CascadeBackend

__all__ = ["ABSTAIN_MARGIN", "CascadeBackend"]
