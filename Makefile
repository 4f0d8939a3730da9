# One virtual environment for everything; `make test` and `make serve` create it on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
GEN_DIR := src/flowrpc/v1
PROTOS := $(wildcard protos/flowrpc/v1/*.proto)
TS := clients/typescript
TS_GEN := $(TS)/src/gen
TS_INSTALLED := $(TS)/node_modules/.installed
BASELINE := protos/baseline.binpb

.PHONY: install proto proto-check lint test serve bench clean ts-install ts-proto ts-proto-check ts-test contract contract-baseline api-doc

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# Generates messages, gRPC stubs and typed .pyi stubs into $(GEN_DIR) (committed, never edited).
proto: $(INSTALLED)
	rm -rf $(GEN_DIR) && mkdir -p $(GEN_DIR)
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=src --grpc_python_out=src \
		--plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy --mypy_out=src \
		--plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc --mypy_grpc_out=src \
		$(PROTOS)
	touch $(GEN_DIR)/__init__.py

# Fails when the committed stubs differ from what the protos generate.
proto-check: $(INSTALLED)
	rm -rf .proto-check && mkdir -p .proto-check
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=.proto-check --grpc_python_out=.proto-check \
		--plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy --mypy_out=.proto-check \
		--plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc --mypy_grpc_out=.proto-check \
		$(PROTOS)
	touch .proto-check/flowrpc/v1/__init__.py
	diff -r .proto-check/flowrpc/v1 $(GEN_DIR) -x __pycache__ \
		|| (echo "generated code is stale: run 'make proto' and commit" && exit 1)
	rm -rf .proto-check

# The TypeScript client's packages, exactly as package-lock.json pins them (npm ci).
ts-install: $(TS_INSTALLED)

$(TS_INSTALLED): $(TS)/package-lock.json
	@command -v npm >/dev/null || (echo "npm not found: install Node 20 or later" && exit 1)
	cd $(TS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Generates the TypeScript messages and services into $(TS_GEN) (committed, never edited) with
# buf.gen.yaml's Protobuf-ES plugin.
ts-proto: $(INSTALLED) $(TS_INSTALLED)
	$(VENV)/bin/buf generate

# Fails when the committed TypeScript code differs from what the protos generate.
ts-proto-check: $(INSTALLED) $(TS_INSTALLED)
	rm -rf .ts-proto-check
	$(VENV)/bin/buf generate --output .ts-proto-check
	diff -r .ts-proto-check/$(TS_GEN) $(TS_GEN) \
		|| (echo "generated TypeScript is stale: run 'make ts-proto' and commit" && exit 1)
	rm -rf .ts-proto-check

# Type-checks the TypeScript client and runs its tests (Node's test runner) against real servers
# that the tests start with this virtual environment's `flowrpc server start`.
ts-test: $(INSTALLED) $(TS_INSTALLED)
	cd $(TS) && FLOWRPC_BIN=$(abspath $(VENV))/bin/flowrpc npm test --silent

# The contract: `buf breaking` (buf.yaml's FILE rules) compares protos/ with $(BASELINE), an
# image of flowrpc.v1 as last released. A recorded image, not the previous commit of main: it
# needs no git history (a shallow or fresh clone, any branch, an exported tarball check the
# same), and it catches a break however many commits it is spread over, where HEAD~1 sees only
# the last one. Additions never break it; after merging some, `make contract-baseline` records
# them so that their later removal is caught too.
contract: $(INSTALLED)
	$(VENV)/bin/buf breaking --against $(BASELINE)

# Records the current protos as the baseline; refuses while they break the recorded one (a break
# on purpose means a new package version, flowrpc.v2, not a new baseline).
contract-baseline: $(INSTALLED)
	test ! -f $(BASELINE) || $(VENV)/bin/buf breaking --against $(BASELINE)
	$(VENV)/bin/buf build --exclude-source-info -o $(BASELINE)

# Writes docs/api.md from the protos, the roles and the reasons in tests/api_doc.py (its test,
# tests/unit/test_api_doc.py, fails when the committed file is stale).
api-doc: $(INSTALLED)
	$(PY) tests/api_doc.py > docs/api.md

lint: $(INSTALLED)
	$(VENV)/bin/buf lint
	$(VENV)/bin/ruff check src tests bench examples
	$(VENV)/bin/ruff format --check src tests bench examples

# Two pytest workers (pytest-xdist), each taking whole test files: most tests wait on servers
# more than they compute, and a file's module fixtures are then made once. PYTEST_ARGS= for one.
PYTEST_ARGS ?= -n 2 --dist loadfile

test: proto-check ts-proto-check lint contract ts-test
	$(PY) -m pytest $(PYTEST_ARGS)

serve: $(INSTALLED)
	$(VENV)/bin/flowrpc server start

bench: $(INSTALLED)
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .proto-check .ts-proto-check .pytest_cache $(TS)/node_modules $(TS)/dist
