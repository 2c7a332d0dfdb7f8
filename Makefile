# The two commands: `make sim` (a simulated bus day end to end) and `make test` (the whole suite).
# Every target sets up .venv from the pinned requirements on first use.

PY      := .venv/bin/python
VENV    := .venv/.installed
BOARD   ?= esp32_devkitc
PORT    ?=
FIRMWARE ?=
PROVISION ?=
ERASE   ?=
FROZEN  ?=

.PHONY: sim test bench bench-device deploy flash clean qemu

# qemu-user runs the ESP32's native code (Xtensa) in make test and make bench: installed here when
# we are root (CI), otherwise the command to run is printed.
QEMU := $(shell command -v qemu-xtensa)
qemu:
ifeq ($(QEMU),)
	@if [ "$$(id -u)" = 0 ]; then \
	  echo "installing qemu-user (qemu-xtensa: the ESP32's native code under test)"; \
	  (apt-get install -y -qq qemu-user >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq qemu-user >/dev/null 2>&1)) \
	  || (echo "could not install qemu-user: run apt-get install qemu-user" && exit 1); \
	else echo "qemu-xtensa is missing: run  sudo apt-get install qemu-user  (Debian)" && exit 1; fi
endif

$(VENV): requirements.txt constraints.txt pyproject.toml
	python3 -m venv .venv
	.venv/bin/pip install --quiet --upgrade pip -c constraints.txt
	.venv/bin/pip install --quiet -r requirements.txt -c constraints.txt
	.venv/bin/pip install --quiet --no-deps -e .
	touch $@

sim: $(VENV)
	.venv/bin/fare sim

test: $(VENV) qemu
	.venv/bin/pytest -n 2 tests

bench: $(VENV) qemu
	$(PY) bench/run.py

# the verifications and taps timed on a connected board running the reader's firmware, beside the
# ESP32 estimate of the last `make bench` (docs/performance.md)
bench-device: $(VENV)
	@test -n "$(PORT)" || (echo "usage: make bench-device PORT=/dev/ttyUSB0   (a board with the reader's firmware: make deploy or a frozen build; docs/performance.md)" && exit 2)
	$(PY) bench/bench_device.py --port $(PORT) $(ARGS)

# deploy has no default board: an esp32_devkitc takes only a frozen build (FROZEN=1), the .mpy
# deploy fits only a board with PSRAM (docs/boards.md)
deploy: $(VENV)
	@test -n "$(PORT)" -a "$(origin BOARD)" != "file" || (echo "usage: make deploy PORT=/dev/ttyUSB0 BOARD=esp32_devkitc FROZEN=1 [PROVISION=dir]   (a frozen build; without FROZEN=1 the .mpy application, for a board with PSRAM: BOARD=esp32_s3; BOARD=unix_sim for the simulator; docs/boards.md)" && exit 2)
	.venv/bin/fare deploy --port $(PORT) --board $(BOARD) $(if $(FROZEN),--frozen) $(if $(PROVISION),--provision $(PROVISION))

flash: $(VENV)
	@test -n "$(PORT)" -a -n "$(FIRMWARE)" || (echo "usage: make flash PORT=/dev/ttyUSB0 FIRMWARE=<micropython>/ports/esp32/build-esp32_devkitc/firmware.bin [BOARD=$(BOARD)] [ERASE=1]   (a frozen build of the board definition boards/$(BOARD)/: docs/boards.md, \"A frozen build\")" && exit 2)
	.venv/bin/fare flash --port $(PORT) --board $(BOARD) --firmware $(FIRMWARE) $(if $(ERASE),--erase)

clean:
	rm -rf .venv build sim-out .pytest_cache .hypothesis
