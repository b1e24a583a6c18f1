//! PostgreSQL adapters of the ports.
