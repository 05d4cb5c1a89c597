# EPA: the two commands for a fresh machine are `make demo` and `make test` (see README.md).
.PHONY: demo test deps fuzz bench package

demo: deps
	cargo run --release --locked --bin epa -- demo

test:
	bash scripts/test.sh

deps:
	bash scripts/install-deps.sh

fuzz:
	bash scripts/fuzz.sh 600

bench:
	cargo bench --workspace --locked

package:
	bash scripts/package.sh
