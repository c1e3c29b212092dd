"""The fault trial of issue 11: the real parts as processes, broken under load (see README, "Fault trial")."""
