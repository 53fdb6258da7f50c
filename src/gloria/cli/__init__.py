"""The ``gloria`` command line: ``main(argv)`` and one small module per subcommand."""
