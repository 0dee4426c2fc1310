"""Charts in chat: the data series (`series`, no drawing) and their pictures (`render`).

`series` reads through the unit of work and returns plain typed data; only `render` imports
matplotlib, so nothing that merely reads pays for it.
"""
