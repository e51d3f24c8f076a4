"""CATER snitch localisation (task 3): the official layout reader, a CATER-style generator, the `cater` task."""
