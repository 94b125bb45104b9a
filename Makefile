# The two commands a newcomer needs: `make run` and `make test`. The rest operate the local stack.
SHELL := /bin/bash
STACK := scripts/stack.sh
PROFILE ?= release
CARGO_PROFILE_FLAG := $(if $(filter release,$(PROFILE)),--release,)

.PHONY: run up down stop start build deps test lint fmt clean bench

## run: install what is missing, build, and run the whole stack in the foreground (Ctrl-C stops it)
run: deps build
	PROFILE=$(PROFILE) $(STACK) run

## up / down: the same stack in the background
up: deps build
	PROFILE=$(PROFILE) $(STACK) up

down:
	$(STACK) down

## stop / start SERVICE=order|payment|stock|redis|postgres|nginx
stop:
	$(STACK) stop $(SERVICE)

start:
	PROFILE=$(PROFILE) $(STACK) start $(SERVICE)

deps:
	$(STACK) deps

build:
	cargo build $(CARGO_PROFILE_FLAG) --bins

## test: everything the tests need, then unit and integration tests against the real stack
test: deps
	cargo build --bins
	TEST_DATABASE_URL=$$($(STACK) test-postgres) cargo test --workspace --no-fail-fast -- --test-threads=$${TEST_THREADS:-4}; \
	status=$$?; $(STACK) test-postgres-stop; exit $$status

## bench: release build, its own stack, then health, checkout (64 clients, 30 s) and replay; .stack/bench/result.json
bench: deps
	scripts/bench.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

clean:
	-$(STACK) down
	rm -rf .stack
