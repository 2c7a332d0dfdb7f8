# The two commands: `make sim` (a simulated bus day end to end) and `make test` (the whole suite).
# Every target sets up .venv from the pinned requirements on first use.

PY      := .venv/bin/python
VENV    := .venv/.installed
BOARD   ?= esp32_devkitc
PORT    ?=
FIRMWARE ?=
PROVISION ?=
ERASE   ?=

.PHONY: sim test bench deploy flash clean

$(VENV): requirements.txt constraints.txt pyproject.toml
	python3 -m venv .venv
	.venv/bin/pip install --quiet --upgrade pip -c constraints.txt
	.venv/bin/pip install --quiet -r requirements.txt -c constraints.txt
	.venv/bin/pip install --quiet --no-deps -e .
	touch $@

sim: $(VENV)
	.venv/bin/fare sim

test: $(VENV)
	.venv/bin/pytest -n 2 tests

bench: $(VENV)
	$(PY) bench/run.py

deploy: $(VENV)
	@test -n "$(PORT)" || (echo "usage: make deploy PORT=/dev/ttyUSB0 [BOARD=$(BOARD)] [PROVISION=provision/reader-N]" && exit 2)
	.venv/bin/fare deploy --port $(PORT) --board $(BOARD) $(if $(PROVISION),--provision $(PROVISION))

flash: $(VENV)
	@test -n "$(PORT)" -a -n "$(FIRMWARE)" || (echo "usage: make flash PORT=/dev/ttyUSB0 FIRMWARE=ESP32_GENERIC-<date>-v1.29.0.bin [BOARD=$(BOARD)] [ERASE=1]" && exit 2)
	.venv/bin/fare flash --port $(PORT) --board $(BOARD) --firmware $(FIRMWARE) $(if $(ERASE),--erase)

clean:
	rm -rf .venv build sim-out .pytest_cache .hypothesis
