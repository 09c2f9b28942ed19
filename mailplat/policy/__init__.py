"""
The SMTP policy layer: checks that give verdicts at each stage of a session.
"""
