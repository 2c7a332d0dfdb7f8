"""The depot's tools: the nightly sync of readers over serial (readersync, synclink), the depot
database (depotdb), reports and exports."""
