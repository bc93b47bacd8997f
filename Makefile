# gridhub developer entry points. `make test` is what CI runs (.ci/run).
.PHONY: setup demo test infra-up infra-down infra-status

setup:
	bash deploy/setup.sh

demo: setup
	.venv/bin/gridhub demo

# Every test, integration ones included (they need the local servers), then the type check.
test: setup
	.venv/bin/gridhub infra up
	.venv/bin/pytest -q
	.venv/bin/mypy

infra-up: setup
	.venv/bin/gridhub infra up

infra-down:
	.venv/bin/gridhub infra down

infra-status:
	.venv/bin/gridhub infra status
