"""The tools that run the whole system on top of ``cart_api`` and ``cart_lakehouse``: the local AWS
(moto server), the dev supervisor (``cart-dev``), the demo, seeded history, the fault proxy."""
