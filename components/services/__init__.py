"""One package per service: component (its containers), config (its stack section), scripts/ (what runs
in its containers or on the host). A new service is a new folder here plus one line in components/suite.py."""
