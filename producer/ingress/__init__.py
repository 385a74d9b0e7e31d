"""Ways in from outside: each adapter validates, maps to schemas events, publishes, answers."""
