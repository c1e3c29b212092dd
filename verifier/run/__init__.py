"""Running the service: ``verifier serve`` (production) and ``verifier demo`` (everything on one machine).

Nothing here is on the request path; it starts processes and hands them settings.
"""
