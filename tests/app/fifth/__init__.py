"""A throwaway fifth service: proves a service plugs in through its module alone (package, one line, migrations)."""
