"""The county centre's decisions as fusion must respect them (issue 15); see :mod:`.fusion_hook`."""
