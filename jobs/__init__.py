"""The shared job store: SQLAlchemy models, engines, and plain queue and quota functions. Imports neither discord nor
torch."""
