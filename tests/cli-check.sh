# cli-check.sh — sourced by the check-*.sh scripts of the dv365 tool: a
# scratch directory ($work, removed on exit), the current directory set to
# the source root ($src), and the expect / contains checks that count into
# $pass and $failures.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$src" || exit 1
failures=0
pass=0

expect() { # expect CODE DESCRIPTION -- command...
    want=$1 what=$2
    shift 3
    "$@" >"$work/out" 2>&1
    got=$?
    if [ "$got" -ne "$want" ]; then
        echo "FAIL: $what: exit $got, expected $want"; sed 's/^/    /' "$work/out" | tail -5
        failures=$((failures + 1))
    else
        pass=$((pass + 1))
    fi
}
contains() { # contains TEXT DESCRIPTION
    if grep -q -- "$1" "$work/out"; then pass=$((pass + 1)); else
        echo "FAIL: $2: output lacks '$1'"; sed 's/^/    /' "$work/out" | tail -5
        failures=$((failures + 1)); fi
}
