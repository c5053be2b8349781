"""The business dashboard: a Dash page over the gold marts, read through DuckDB, never writing to the lake.

It sits between `cart_lakehouse` (the marts' layout and contracts) and `cart_dev` (which serves it in `make run`).
"""
