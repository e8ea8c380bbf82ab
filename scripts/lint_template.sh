#!/usr/bin/env bash
# Lint, validate, build and scan template.yaml.
#   bash scripts/lint_template.sh                 # the real tree
#   bash scripts/lint_template.sh --placeholders  # sam build a throwaway copy in
#       which missing handlers / state machine are stubbed (while parts are
#       still being written); never use this in CI.
# The tools live in their own virtualenv (.tools, git-ignored) so they never
# clash with the project's .venv. Nothing is left in the work tree: sam build
# writes into a temporary directory that is removed on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TOOLS="$ROOT/.tools"
if [[ ! -x "$TOOLS/bin/sam" || ! -x "$TOOLS/bin/checkov" || ! -x "$TOOLS/bin/cfn-lint" ]]; then
    echo "== installing aws-sam-cli, checkov and cfn-lint into .tools"
    python3.11 -m venv "$TOOLS"
    "$TOOLS/bin/pip" install -q --upgrade pip
    # Pinned: a new linter release can add findings; upgrade these on purpose.
    "$TOOLS/bin/pip" install -q "aws-sam-cli==1.170.0" "checkov==3.2.459" "cfn-lint==1.58.0"
fi

export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export SAM_CLI_TELEMETRY=0
export SAM_CLI_DISABLE_UPDATE_CHECK=1
# sam validate resolves no credentials for --lint, but botocore looks for them:
# give it harmless dummies when none are configured so nothing prompts or waits.
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-testing}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-testing}"
export AWS_EC2_METADATA_DISABLED=true

BUILD_DIR="$(mktemp -d)"
CACHE_DIR="$(mktemp -d)"
trap 'rm -rf "$BUILD_DIR" "$CACHE_DIR"' EXIT

echo "== sam validate --lint"
"$TOOLS/bin/sam" validate --lint --template-file template.yaml

echo "== cfn-lint template.yaml"
"$TOOLS/bin/cfn-lint" template.yaml

echo "== sam build"
# Every CodeUri handler and the state machine definition must exist.
missing=()
for dir in $(sed -n 's/^ *CodeUri: *\(functions\/[A-Za-z0-9_]*\)\/\{0,1\} *$/\1/p' template.yaml); do
    [[ -f "$dir/app.py" ]] || missing+=("$dir/app.py")
done
for def in $(sed -n 's/^ *DefinitionUri: *\([^ ]*\) *$/\1/p' template.yaml); do
    [[ -f "$def" ]] || missing+=("$def")
done
BUILD_SRC="$ROOT"
if (( ${#missing[@]} )); then
    if [[ "${1:-}" != "--placeholders" ]]; then
        printf 'missing (referenced by template.yaml): %s\n' "${missing[@]}" >&2
        exit 1
    fi
    BUILD_SRC="$(mktemp -d)"
    trap 'rm -rf "$BUILD_DIR" "$CACHE_DIR" "$BUILD_SRC"' EXIT
    cp -r template.yaml src "$BUILD_SRC/"
    [[ -d functions ]] && cp -r functions "$BUILD_SRC/"
    [[ -d statemachine ]] && cp -r statemachine "$BUILD_SRC/"
    for path in "${missing[@]}"; do
        echo "   placeholder for $path (throwaway copy only)"
        mkdir -p "$BUILD_SRC/$(dirname "$path")"
        case "$path" in
            *.py) printf 'def handler(event, context):\n    return {}\n' >"$BUILD_SRC/$path" ;;
            *) printf '{"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}\n' >"$BUILD_SRC/$path" ;;
        esac
    done
fi
# sam build (without a container) needs the Lambda runtime's interpreter on PATH:
# the layer's BuildMethod (python3.13) names it. Take it from PATH, else from pyenv.
RUNTIME="$(sed -n 's/^ *BuildMethod: *\(python3\.[0-9]*\) *$/\1/p' template.yaml | head -n 1)"
[[ -n "$RUNTIME" ]] || { echo "no python BuildMethod in template.yaml" >&2; exit 1; }
RUNTIME_BIN=""
# (A pyenv shim is on PATH even when its version is not active: ask the interpreter.)
if exe="$("$RUNTIME" -c 'import sys; print(sys.executable)' 2>/dev/null)" && [[ -n "$exe" ]]; then
    RUNTIME_BIN="$(dirname "$exe")"
else
    PYENV_DIR="${PYENV_ROOT:-$HOME/.pyenv}/versions"
    for candidate in "$PYENV_DIR"/"${RUNTIME#python}"*/bin; do
        [[ -x "$candidate/$RUNTIME" ]] && RUNTIME_BIN="$candidate"
    done
fi
if [[ -z "$RUNTIME_BIN" ]]; then
    echo "sam build needs $RUNTIME (the Lambda runtime) on PATH or under pyenv;" \
        "install it (for example: pyenv install ${RUNTIME#python})" >&2
    exit 1
fi
echo "   building with $RUNTIME_BIN/$RUNTIME"
# Run from the scratch directory: sam build keeps a .aws-sam/deps folder in its
# working directory, and paths in the template resolve against the template.
(cd "$CACHE_DIR" && PATH="$RUNTIME_BIN:$PATH" "$TOOLS/bin/sam" build \
    --template-file "$BUILD_SRC/template.yaml" \
    --build-dir "$BUILD_DIR" --cache-dir "$CACHE_DIR/cache")

echo "== unzipped size: each function with the layer"
# Lambda quota: 250 MB unzipped for a function's package and all its layers, and
# the service counts 262144000 bytes (Lambda quotas:
# https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
QUOTA=262144000
layer=$(du -sb "$BUILD_DIR/DeltaloadLayer" | cut -f1)
echo "   DeltaloadLayer: $layer bytes ($((layer / 1000000)) MB)"
largest=0
for dir in "$BUILD_DIR"/*Function; do
    size=$(du -sb "$dir" | cut -f1)
    (( size > largest )) && largest=$size
done
total=$((layer + largest))
echo "   largest function + layer: $total of $QUOTA bytes ($((100 * total / QUOTA))%)"
if (( total >= QUOTA )); then
    echo "the layer and the largest function exceed Lambda's unzipped quota" >&2
    exit 1
fi

echo "== checkov"
"$TOOLS/bin/checkov" -f template.yaml --framework cloudformation --quiet --compact --skip-download

echo "== template checks passed"
