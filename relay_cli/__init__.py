"""`relay`: operate a conversion-relay stack (deployed, or `make local`) from the command line."""
