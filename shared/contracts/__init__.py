"""Event contracts: what the POS publishes (``pos``) and what our services emit (``domain``)."""
