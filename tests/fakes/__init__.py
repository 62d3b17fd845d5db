"""Stand-ins for services that cannot run on this machine, faked at their HTTP boundary."""
