"""The in-memory repositories, one module per group of tables (the unit of work that joins them
is ``adapters.memory.store``)."""
