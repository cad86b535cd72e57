"""The library every devtools service imports: settings, database, backends, migrations, bus, locks."""
