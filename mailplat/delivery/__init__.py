"""
Delivery targets: where the queue runner hands messages.
"""
