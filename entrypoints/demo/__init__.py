"""The demo and the simulation (``livesell simulate``): scripted lives run on the memory engine or
the embedded one, checked by one set of invariants. Production never imports this package
(import-linter); ``livesell simulate`` imports it when it runs."""
