"""Token wire formats: health codes (``YK1:``), keys and JWKS, and the reason taxonomy.

Pure: no settings, no database, no network, no clock. Callers pass ``now``.
"""
