"""Tools to test ccs-run against media nobody on the team made: hostile inputs and a mutation fuzzer."""
