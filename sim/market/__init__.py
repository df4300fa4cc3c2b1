"""The consumer market: shoppers, products, pricers and the market phase of a tick.

Modules: :mod:`sim.market.state` (struct-of-arrays state), :mod:`sim.market.view`
(what a pricer sees; the protocol), :mod:`sim.market.world` (the phase).
The kernels are in :mod:`sim.kernels.market`; the built-in pricers in
:mod:`sim.builtin.pricers`.
"""
