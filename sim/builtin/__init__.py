"""Built-in algorithms. :mod:`sim.builtin.recommenders` holds the feed recommenders and wrappers."""
