"""Everything SQLAlchemy: the ledger of paid work and its migrations."""
