"""The delivery fleet: a city, couriers, orders, dispatchers and the fleet phase of a tick (Art. 20).

Modules: :mod:`sim.fleet.state` (struct-of-arrays state), :mod:`sim.fleet.view`
(what a dispatcher sees; the protocol), :mod:`sim.fleet.world` (the phase).
The kernels are in :mod:`sim.kernels.fleet`; the built-in dispatchers in
:mod:`sim.builtin.dispatchers`.
"""
