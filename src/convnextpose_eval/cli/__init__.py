"""The command-line tools: the evaluation command and its subcommands (inspect, bench, export, compare)."""
