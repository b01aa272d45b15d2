# segsam needs Go 1.27 (fetched by the go command) and the SIMD build of
# GoMLX's pure-Go backend (30x faster matrix products). Every target sets both.
export GOTOOLCHAIN := go1.27.3
export GOEXPERIMENT := simd

GO ?= go
BIN := bin/segsam

.PHONY: build install demo test vet bench fmt clean

build:
	$(GO) build -o $(BIN) ./cmd/segsam

# Installs segsam into $(go env GOBIN), or $(go env GOPATH)/bin, with the same settings.
install:
	$(GO) install ./cmd/segsam

# The README's first command: the built-in model on the bundled example.
demo: build
	$(BIN) demo --out segsam-demo

# The README's test command.
test: vet
	$(GO) test -count=1 ./...

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt wants to reformat:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Encoder and decoder timings with random weights (minutes: vit_b at 1024 is slow on 2 cores).
bench: build
	$(BIN) bench --arch builtin,sammed2d_vit_b,vit_b,litemedsam,mobilesam_vit_t --runs 3

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
