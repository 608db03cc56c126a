"""Governance: signing identities, provenance manifests, the transparency ledger, watermarks and safety filters."""
