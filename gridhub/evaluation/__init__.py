"""Quality measurement of the hub's decisions (``gridhub eval``)."""
