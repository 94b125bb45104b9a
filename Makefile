# The two commands a newcomer needs: `make run` and `make test`. The rest operate the local stack.
SHELL := /bin/bash
STACK := scripts/stack.sh
PROFILE ?= release
CARGO_PROFILE_FLAG := $(if $(filter release,$(PROFILE)),--release,)

.PHONY: run up down stop start build deps test-deps test lint fmt clean bench chaos sqlx-prepare validate-kubernetes \
	compose-images compose-test compose-scenarios

## run: install what is missing, build, and run the whole stack in the foreground (Ctrl-C stops it)
run: deps build
	PROFILE=$(PROFILE) $(STACK) run

## up / down: the same stack in the background (INSTANCES=n: n instances of each service behind nginx)
up: deps build
	PROFILE=$(PROFILE) $(STACK) up

down:
	$(STACK) down

## stop / start SERVICE=order|payment|stock|redis|postgres|nginx (INSTANCE=i: one instance of a service)
stop:
	$(STACK) stop $(SERVICE)

start:
	PROFILE=$(PROFILE) $(STACK) start $(SERVICE)

deps:
	$(STACK) deps

## test-deps: what the tests need beyond the stack (schemathesis, in .stack/venv)
test-deps: deps
	$(STACK) test-deps

## build: every binary of the workspace (target/release, or target/debug with PROFILE=debug): the
## services, and the chaos harness, load generator and invariant checker, built with the same features
build:
	cargo build $(CARGO_PROFILE_FLAG) --bins

## test: everything the tests need, unit and integration tests against the real stack (schemathesis
## against every service's OpenAPI document included), a short chaos run (20 s of faults, seed 5),
## then the compose test wherever a container engine answers (`docker info`)
test: test-deps
	bash scripts/validate-kubernetes.sh
	cargo build --bins
	TEST_DATABASE_URL=$$($(STACK) test-postgres) cargo test --workspace --no-fail-fast -- --test-threads=$${TEST_THREADS:-4}; \
	status=$$?; $(STACK) test-postgres-stop; [ $$status = 0 ] || exit $$status
	target/debug/chaos --seconds 20 --seed 5 --instances 2 --network --out .stack/chaos-test
	@if docker info >/dev/null 2>&1; then $(MAKE) --no-print-directory compose-test; \
	else echo "compose-test skipped: no container engine answers (docker info fails)"; fi

## compose-images: every image docker-compose.yml's default profile needs, on an engine that cannot
## pull: debian:bookworm-slim made with debootstrap when missing (once), then PostgreSQL, Redis,
## nginx and the services' image (with the host's release build)
compose-images: deps
	scripts/compose.sh images

## compose-test: docker-compose.yml for real, under a project of its own, from nothing: up --wait,
## Prometheus scraping it, the black-box tests and schemathesis through its nginx, the invariants on
## its databases, then the operators' scenarios (compose-scenarios); leaves nothing behind
## (docs/testing.md#docker-compose)
compose-test: compose-images test-deps
	scripts/compose.sh test

## compose-scenarios: the stack from nothing and what operators do to it, each under load — restarts,
## crashes (a service, Redis with its data, PostgreSQL), a partition and a hang, down and up, scale,
## an upgrade from an older commit's images — each checked with the invariants (compose-test runs them
## too); figures in .stack/compose/test/scenarios/
compose-scenarios: compose-images test-deps
	scripts/compose.sh test scenarios

## chaos: checkout under a seeded fault schedule, then the invariants (docs/guarantees.md); .stack/chaos/result.json
## (CHAOS_SECONDS=60, SEED= from the clock unless given, CHAOS_CLIENTS=16, INSTANCES=n: kills take one instance;
## CHAOS_NETWORK=1: faults on the wire too, through a seeded fault proxy on every link; 0: kills only)
CHAOS_SECONDS ?= 60
CHAOS_CLIENTS ?= 16
CHAOS_NETWORK ?= 1
chaos: deps
	cargo build --release --bins
	target/release/chaos --profile release --seconds $(CHAOS_SECONDS) --clients $(CHAOS_CLIENTS) \
		$(if $(SEED),--seed $(SEED),) $(if $(INSTANCES),--instances $(INSTANCES),) \
		$(if $(filter 1,$(CHAOS_NETWORK)),--network,)

## bench: release build, its own stack, then health, replay, and checkout and checkout_split (every sale
## split among three recipients) taking turns, and transfer (64 clients, 30 s each); .stack/bench/result.json.
## BENCH_TARGET=compose: the same against docker-compose.yml's stack (project checkout-bench, from the
## images compose-images makes, taken down with its volumes at the end); .stack/bench/compose/result.json
BENCH_TARGET ?= native
bench: deps $(if $(filter compose,$(BENCH_TARGET)),compose-images,)
	BENCH_TARGET=$(BENCH_TARGET) scripts/bench.sh

## sqlx-prepare: after changing a SQL statement or a migration, regenerate the statements'
## descriptions (<service>/.sqlx) that builds check the SQL against (SERVICES="stock" for one)
sqlx-prepare: deps
	scripts/sqlx-prepare.sh

## validate-kubernetes: the manifests in deploy/kubernetes/ against the Kubernetes API's schemas, offline,
## and against the code and docs/configuration.md (docs/kubernetes.md)
validate-kubernetes:
	bash scripts/validate-kubernetes.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

clean:
	-$(STACK) down
	rm -rf .stack
