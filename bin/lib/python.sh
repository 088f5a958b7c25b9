# Sourced by bin/demo and bin/test: which Python builds the virtual environment.
#
# Supported: 3.11 to 3.13 (pyproject.toml's requires-python). PYTHON=/path/to/python3.x chooses one;
# otherwise the newest supported interpreter on the PATH that actually runs (a pyenv shim for a
# version that is not active answers "command not found" and is skipped). VENV [.venv] is the
# environment's folder; an existing one is kept as long as its Python is supported.

SUPPORTED_PYTHONS=(3.13 3.12 3.11)  # newest first

# python_version EXE: "3.x" of a runnable interpreter; fails for anything that does not run.
python_version() {
    "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null
}

python_supported() {
    local version supported
    version=$(python_version "$1") || return 1
    for supported in "${SUPPORTED_PYTHONS[@]}"; do
        [ "$version" = "$supported" ] && return 0
    done
    return 1
}

# pick_python: prints the interpreter to use, or explains on stderr and fails.
pick_python() {
    if [ -n "${PYTHON:-}" ]; then
        if ! python_supported "$PYTHON"; then
            echo "PYTHON=$PYTHON is $(python_version "$PYTHON" || echo "not a runnable Python"); supported: ${SUPPORTED_PYTHONS[*]}" >&2
            return 1
        fi
        echo "$PYTHON"
        return 0
    fi
    local version
    for version in "${SUPPORTED_PYTHONS[@]}"; do
        if python_supported "python$version"; then
            echo "python$version"
            return 0
        fi
    done
    if python_supported python3; then
        echo python3
        return 0
    fi
    echo "No Python ${SUPPORTED_PYTHONS[*]} on the PATH (tried python3.13, python3.12, python3.11, python3)." >&2
    echo "Install one (Debian 12: python3.11, Ubuntu 24.04: python3.12, Debian 13: python3.13) or set PYTHON=/path/to/python3.x" >&2
    return 1
}

# ensure_venv DIR: create DIR with pick_python's interpreter unless it already holds a supported one.
ensure_venv() {
    local venv=$1 python have
    if [ -x "$venv/bin/python" ]; then
        if ! have=$(python_version "$venv/bin/python") || ! python_supported "$venv/bin/python"; then
            echo "$venv holds Python ${have:-that does not run}, not one of ${SUPPORTED_PYTHONS[*]}: remove it (rm -r $venv) and run again" >&2
            return 1
        fi
        if [ -n "${PYTHON:-}" ] && [ "$have" != "$(python_version "$PYTHON")" ]; then
            echo "$venv holds Python $have but PYTHON=$PYTHON is $(python_version "$PYTHON"): remove $venv or choose another folder with VENV=" >&2
            return 1
        fi
        return 0
    fi
    python=$(pick_python) || return 1
    echo "Creating $venv with $python (Python $(python_version "$python"))" >&2
    "$python" -m venv "$venv"
}
