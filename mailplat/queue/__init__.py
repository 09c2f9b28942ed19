"""
The durable queue: spool files with a JSON envelope, and the runner that hands
them to delivery targets with retries.
"""
