"""`scheduler diff`: what a topology edit changes and what it would do, before it goes live.

changes.py lists the edit itself (with NEW's line numbers), routes.py its effect on the network, capacity.py
on each pool, plans.py on the fleet plan at one hour of demand (demand.py); report.py ties them together and
decides the exit code; render.py writes the report as text, markdown or JSON.
"""
