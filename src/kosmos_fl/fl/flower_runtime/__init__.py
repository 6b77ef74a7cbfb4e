"""Every place that starts, patches or version-guards Flower's own processes: SuperLink and
SuperNode control, the warm SuperExec, short object-pull retries."""
