"""carepress: raw patient-education text -> one validated content model -> handouts, e-book, site, captions."""

__version__ = "0.1.0"
