"""Dashboards: typed access to the SQL views of migration 0002, `ttrl status`/`answers`/`plot`.

The views themselves are SQL (``migrations/versions/0002_dashboard_views.py``) so that any
SQL dashboard (Grafana, Metabase, Superset, psql) charts the same numbers ttrl prints.
"""
