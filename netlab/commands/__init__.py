"""CLI commands that live in modules of their own (see EXTENSION_COMMANDS in netlab.cli)."""
