"""The simulator, which plays every role: the rider's phone (wallet), the reader's peripherals
(emulators), simulated readers and buses, the simulated day (`fare sim`) and tap scenarios.
It stands on top: it may use every job's package; none of them imports it."""
