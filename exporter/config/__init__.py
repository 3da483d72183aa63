"""The configuration file: the settings engine, its sections, and the values it checks."""
