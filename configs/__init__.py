"""Shipped configuration files, installed as the ``ttrl.configs`` resource package."""
