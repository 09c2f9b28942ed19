"""
The C{mailplat} admin command.
"""
